/**
 * The formula language of Calculation nodes (src/automation/formula.ts): printing a tree and
 * parsing it back keeps its meaning, the parser never throws and says where input is wrong,
 * precedence and associativity agree with JavaScript's for the operators the two share, and the
 * fixed cases of the grammar's comment (power binds tighter than unary minus and associates to the
 * right, short-circuit logic, no reach into prototypes, bounded nesting and length).
 */

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  type BinaryOp,
  type Expr,
  evaluate,
  FUNCTIONS,
  formatExpr,
  MAX_FORMULA_LENGTH,
  parseFormula,
  type Result,
  type Value,
  variablesOf,
} from '../../src/automation/formula.ts';

const NAMES = ['a', 'b', 'c', 'x_1'] as const;
const BINARY_OPS: BinaryOp[] = ['||', '&&', '==', '!=', '<', '<=', '>', '>=', '+', '-', '*', '/', '%', '^'];

function parse(text: string): Expr {
  const parsed = parseFormula(text);
  assert.ok(parsed.ok, `${JSON.stringify(text)} should parse: ${parsed.ok ? '' : parsed.error}`);
  return parsed.value;
}

function value(text: string, inputs: Record<string, Value> = {}): Value {
  const result = evaluate(parse(text), inputs);
  assert.ok(result.ok, `${text} should evaluate: ${result.ok ? '' : result.error}`);
  return result.value;
}

function problem(text: string, inputs: Record<string, Value> = {}): string {
  const parsed = parseFormula(text);
  if (!parsed.ok) return parsed.error;
  const result = evaluate(parsed.value, inputs);
  assert.ok(!result.ok, `${text} should fail, but gave ${result.ok ? String(result.value) : ''}`);
  return result.error;
}

/** Same value (numbers by Object.is, so NaN equals NaN and 0 differs from -0), or the same error. */
function sameResult(a: Result<Value>, b: Result<Value>): boolean {
  if (a.ok !== b.ok) return false;
  if (!a.ok || !b.ok) return !a.ok && !b.ok && a.error === b.error;
  return Object.is(a.value, b.value);
}

/**
 * Trees of the shapes the parser builds: literals are non-negative (a minus sign is a unary
 * operator), names come from NAMES, and calls have an arity their function accepts.
 */
const exprArb: fc.Arbitrary<Expr> = fc.letrec<{ expr: Expr }>((tie) => ({
  expr: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc
      .oneof(
        fc.double({ min: 0, max: 1e6, noNaN: true, noDefaultInfinity: true }),
        fc.integer({ min: 0, max: 10 }),
        fc.constantFrom(0.5, 1e21, 1e-7, 2 ** 53),
      )
      .map((v): Expr => ({ k: 'num', v: Object.is(v, -0) ? 0 : v })),
    fc.boolean().map((v): Expr => ({ k: 'bool', v })),
    fc.constantFrom(...NAMES).map((name): Expr => ({ k: 'var', name })),
    fc
      .record({ op: fc.constantFrom('-' as const, '+' as const, '!' as const), e: tie('expr') })
      .map(({ op, e }): Expr => ({ k: 'un', op, e })),
    fc
      .record({ op: fc.constantFrom(...BINARY_OPS), l: tie('expr'), r: tie('expr') })
      .map(({ op, l, r }): Expr => ({ k: 'bin', op, l, r })),
    fc.record({ c: tie('expr'), t: tie('expr'), f: tie('expr') }).map((p): Expr => ({ k: 'if', ...p })),
    fc.constantFrom(...Object.keys(FUNCTIONS)).chain((fn) => {
      const spec = FUNCTIONS[fn]!;
      return fc
        .array(tie('expr'), { minLength: spec.min, maxLength: Math.min(spec.max, 4) })
        .map((args): Expr => ({ k: 'call', fn, args }));
    }),
  ),
})).expr;

const inputsArb: fc.Arbitrary<Record<string, Value>> = fc.record(
  Object.fromEntries(
    NAMES.map((name) => [
      name,
      fc.oneof(
        fc.integer({ min: -5, max: 5 }),
        fc.double({ noNaN: true, noDefaultInfinity: true, min: -1e9, max: 1e9 }),
        fc.boolean(),
      ),
    ]),
  ),
  { requiredKeys: [] },
) as fc.Arbitrary<Record<string, Value>>;

describe('formatExpr and parseFormula', () => {
  test('a printed tree parses back to the same tree, which evaluates the same under any inputs', () => {
    fc.assert(
      fc.property(exprArb, fc.array(inputsArb, { minLength: 1, maxLength: 4 }), (tree, inputsList) => {
        const text = formatExpr(tree);
        fc.pre(text.length <= MAX_FORMULA_LENGTH);
        const parsed = parseFormula(text);
        assert.ok(parsed.ok, `${text}: ${parsed.ok ? '' : parsed.error}`);
        assert.deepEqual(parsed.value, tree);
        for (const inputs of inputsList) {
          const want = evaluate(tree, inputs);
          const got = evaluate(parsed.value, inputs);
          assert.ok(sameResult(want, got), `${text} with ${JSON.stringify(inputs)}`);
        }
      }),
      { numRuns: 400 },
    );
  });

  test('variablesOf names exactly the inputs a tree reads', () => {
    fc.assert(
      fc.property(exprArb, (tree) => {
        const names = variablesOf(tree);
        for (const name of names) assert.ok((NAMES as readonly string[]).includes(name));
        for (const name of NAMES) {
          assert.equal(names.has(name), new RegExp(`\\b${name}\\b`).test(formatExpr(tree)), name);
        }
      }),
      { numRuns: 200 },
    );
    assert.deepEqual([...variablesOf(parse('a + max(b, c ? d : 1) - !e'))].sort(), ['a', 'b', 'c', 'd', 'e']);
    assert.deepEqual([...variablesOf(parse('1 + 2'))], []);
  });
});

describe('parseFormula on arbitrary text', () => {
  /**
   * Bad input is answered with where it went wrong: a 1-based position inside the text (or just
   * past its end), or "at the end". Only empty input and a nesting too deep have no position.
   */
  function checkAnswer(text: string): void {
    let parsed: Result<Expr>;
    assert.doesNotThrow(() => {
      parsed = parseFormula(text);
    }, JSON.stringify(text));
    const answer = parsed!;
    if (answer.ok) return;
    assert.equal(typeof answer.error, 'string');
    assert.ok(answer.error.length > 0);
    if (/^the formula is empty$|^nested more than \d+ deep$/.test(answer.error)) return;
    const at = /at (\d+)\)?$/.exec(answer.error);
    if (at) {
      const position = Number(at[1]);
      assert.ok(position >= 1 && position <= text.length + 1, `${answer.error} for ${JSON.stringify(text)}`);
    } else {
      assert.match(answer.error, /at the end$/, JSON.stringify(text));
    }
  }

  const formulaChars = fc.constantFrom(...'ab1.2e+-*/%^!?:()<=>&|, _xtruefalsmin'.split(''));

  test('never throws, and says where bad input goes wrong (arbitrary strings)', () => {
    fc.assert(fc.property(fc.string(), checkAnswer), { numRuns: 1000 });
    fc.assert(fc.property(fc.string({ unit: 'binary', maxLength: 40 }), checkAnswer), { numRuns: 300 });
  });

  test('never throws, and says where bad input goes wrong (strings of formula characters)', () => {
    fc.assert(fc.property(fc.string({ unit: formulaChars, maxLength: 40 }), checkAnswer), { numRuns: 3000 });
  });

  test('error messages of fixed bad input', () => {
    assert.equal(problem(''), 'the formula is empty');
    assert.equal(problem('   '), 'the formula is empty');
    assert.equal(problem('1 +'), 'the formula ends too soon (at 4)');
    assert.equal(problem('(1 + 2'), 'expected ")" at the end');
    assert.equal(problem('1 2'), 'unexpected "2" at 3');
    assert.equal(problem('a # b'), 'unexpected "#" at 3');
    assert.equal(problem('a ? b'), 'expected ":" at the end');
    assert.equal(problem('max()'), 'max() takes 1 to 64 arguments, not 0 (at 1)');
    assert.equal(problem('1 + pow(2)'), 'pow() takes 2 arguments, not 1 (at 5)');
    assert.equal(problem('a = 1'), 'unexpected "=" at 3');
    assert.equal(problem('a.b'), 'unexpected "." at 2');
  });
});

describe('precedence and associativity', () => {
  /** Flat formulas over + - * / % ^ and positive literals, which JavaScript reads the same way. */
  const flat = fc
    .tuple(
      fc.constantFrom('0', '1', '2', '3', '7', '10', '0.5', '2.25', '1e3'),
      fc.array(
        fc.tuple(
          fc.constantFrom('+', '-', '*', '/', '%', '^'),
          fc.constantFrom('0', '1', '2', '3', '7', '10', '0.5', '2.25', '1e3'),
        ),
        { maxLength: 8 },
      ),
    )
    .map(([first, rest]) => [first, ...rest.flat()]);

  test('agree with JavaScript on flat arithmetic (the oracle evaluates the same tokens)', () => {
    fc.assert(
      fc.property(flat, (tokens) => {
        const formula = tokens.join(' ');
        const js = tokens.map((t) => (t === '^' ? '**' : t)).join(' ');
        // Test-only oracle over a string built from the fixed tokens above.
        const want = new Function(`return (${js});`)() as number;
        const got = evaluate(parse(formula), {});
        if (Number.isFinite(want)) {
          assert.ok(got.ok, `${formula}: ${got.ok ? '' : got.error}`);
          assert.ok(Object.is(got.value, want), `${formula} = ${String(got.value)}, JavaScript says ${want}`);
        } else {
          assert.deepEqual(got, { ok: false, error: `the result is ${want}` }, formula);
        }
      }),
      { numRuns: 2000 },
    );
  });

  test('fixed cases', () => {
    assert.equal(value('-2^2'), -4);
    assert.equal(value('2^3^2'), 512);
    assert.equal(value('(2^3)^2'), 64);
    assert.equal(value('2^-1'), 0.5);
    assert.equal(value('-2^-2'), -0.25);
    assert.equal(value('2 * 3 ^ 2'), 18);
    assert.equal(value('10 - 4 - 3'), 3);
    assert.equal(value('2 + 3 * 4'), 14);
    assert.equal(value('7 % 4 * 2'), 6);
    assert.equal(value('1 < 2 == 2 < 3'), true);
    assert.equal(value('1 + 1 == 2 && 3 > 2'), true);
    assert.equal(value('!0 + 1'), 2);
    assert.equal(value('!(0 + 1)'), false);
    assert.equal(value('--3'), 3);
    assert.equal(value('true + true'), 2);
    assert.equal(value('1 == true'), true);
  });

  test('the ternary: lowest precedence, right-associative, only the chosen branch is evaluated', () => {
    assert.equal(value('1 > 2 ? 10 : 20'), 20);
    assert.equal(value('a ? 1 : b ? 2 : 3', { a: false, b: true }), 2);
    assert.equal(value('a ? 1 : b ? 2 : 3', { a: 0, b: 0 }), 3);
    assert.equal(value('a ? b ? 1 : 2 : 3', { a: 1, b: 0 }), 2);
    assert.equal(value('1 + 1 ? 5 : 6'), 5);
    // The branch not taken may read an input that is missing, or divide by zero.
    assert.equal(value('a > 0 ? a : missing', { a: 4 }), 4);
    assert.equal(value('true ? 1 : 1 / 0'), 1);
    assert.equal(problem('false ? 1 : missing'), 'no input "missing"');
  });

  test('&& and || short-circuit and answer a boolean', () => {
    assert.equal(value('false && missing'), false);
    assert.equal(value('0 && missing'), false);
    assert.equal(value('true || missing'), true);
    assert.equal(value('2 || missing'), true);
    assert.equal(problem('true && missing'), 'no input "missing"');
    assert.equal(problem('false || missing'), 'no input "missing"');
    assert.equal(value('2 && 3'), true);
    assert.equal(value('0 || 0'), false);
    assert.equal(value('a || b && c', { a: 0, b: 1, c: 0 }), false);
    assert.equal(value('a && b || c', { a: 0, b: 1, c: 1 }), true);
  });
});

describe('evaluate', () => {
  test('functions', () => {
    assert.equal(value('abs(-3) + sqrt(16) + floor(2.7) + ceil(2.1)'), 12);
    assert.equal(value('round(2.567)'), 3);
    assert.equal(value('round(2.567, 2)'), 2.57);
    assert.equal(value('pow(2, 10)'), 1024);
    assert.equal(value('min(4, 2, 8)'), 2);
    assert.equal(value('max(4, 2, 8)'), 8);
    assert.equal(value('avg(1, 2, 3, 4)'), 2.5);
    assert.equal(value('clamp(15, 0, 10)'), 10);
    assert.equal(value('clamp(-5, 0, 10)'), 0);
    assert.equal(value('max(true, 0)'), 1);
  });

  test('names that exist on every object are not functions and not inputs', () => {
    for (const name of ['constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf']) {
      assert.equal(problem(`${name}(1)`), `no function "${name}" (at 1)`);
      assert.equal(problem(`1 + ${name}()`), `no function "${name}" (at 5)`);
      assert.equal(problem(name), `no input "${name}"`);
    }
    assert.equal(problem('nosuch(1)'), 'no function "nosuch" (at 1)');
  });

  test('an input missing at evaluation is an error naming it', () => {
    const tree = parse('a + b');
    assert.deepEqual(evaluate(tree, { a: 1 }), { ok: false, error: 'no input "b"' });
    assert.deepEqual(evaluate(tree, { a: 1, b: 2 }), { ok: true, value: 3 });
    const inherited = Object.create({ b: 5 }) as Record<string, Value>;
    inherited.a = 1;
    assert.deepEqual(evaluate(tree, inherited), { ok: false, error: 'no input "b"' });
  });

  test('a result that is not finite is an error', () => {
    assert.deepEqual(evaluate(parse('1 / 0'), {}), { ok: false, error: 'the result is Infinity' });
    assert.deepEqual(evaluate(parse('-1 / 0'), {}), { ok: false, error: 'the result is -Infinity' });
    assert.deepEqual(evaluate(parse('0 / 0'), {}), { ok: false, error: 'the result is NaN' });
    assert.deepEqual(evaluate(parse('sqrt(-1)'), {}), { ok: false, error: 'the result is NaN' });
    assert.deepEqual(evaluate(parse('1e999'), {}), { ok: false, error: 'the result is Infinity' });
    assert.deepEqual(evaluate(parse('a / b'), { a: 1, b: 0 }), {
      ok: false,
      error: 'the result is Infinity',
    });
    // Not finite on the way, finite at the end: fine.
    assert.equal(value('1 / 0 > 5'), true);
  });
});

describe('limits', () => {
  test('nesting deeper than 64 is an error, not a stack overflow', () => {
    const parens = (n: number): string => `${'('.repeat(n)}1${')'.repeat(n)}`;
    assert.equal(value(parens(40)), 1);
    for (const text of [
      parens(64),
      parens(2000),
      `${'-'.repeat(100)}1`,
      `${'!'.repeat(4000)}1`,
      `${'-'.repeat(MAX_FORMULA_LENGTH - 1)}1`,
      Array(1000).fill('2').join('^'),
      `${'1 ? '.repeat(500)}1${' : 1'.repeat(500)}`,
      `${'abs('.repeat(100)}1${')'.repeat(100)}`,
      `${'('.repeat(MAX_FORMULA_LENGTH)}`,
    ]) {
      assert.equal(problem(text), 'nested more than 64 deep', text.slice(0, 20));
    }
  });

  test('long flat chains (not nested) parse and evaluate without overflowing', () => {
    const terms = Math.floor((MAX_FORMULA_LENGTH + 1) / 2);
    const text = Array(terms).fill('1').join('+');
    assert.ok(text.length <= MAX_FORMULA_LENGTH);
    assert.equal(value(text), terms);
    assert.equal(value(Array(terms).fill('a').join('*'), { a: 1 }), 1);
  });

  test(`formulas longer than ${MAX_FORMULA_LENGTH} characters are refused`, () => {
    const longest = `1${' '.repeat(MAX_FORMULA_LENGTH - 1)}`;
    assert.equal(value(longest), 1);
    assert.deepEqual(parseFormula(`${longest} `), {
      ok: false,
      error: `longer than ${MAX_FORMULA_LENGTH} characters`,
    });
    assert.equal(parseFormula('x'.repeat(1_000_000)).ok, false);
  });
});
