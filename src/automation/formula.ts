/**
 * The formula language of Calculation nodes: arithmetic and logic over named inputs, parsed into
 * a tree and evaluated by walking it. No `eval`, no `Function`, no property access: a formula can
 * compute, never reach anything.
 *
 *   expr     := ternary
 *   ternary  := or ('?' expr ':' expr)?
 *   or       := and ('||' and)*          and := equality ('&&' equality)*
 *   equality := compare (('=='|'!=') compare)*
 *   compare  := sum (('<'|'<='|'>'|'>=') sum)*
 *   sum      := product (('+'|'-') product)*
 *   product  := unary (('*'|'/'|'%') unary)*
 *   unary    := ('-'|'+'|'!') unary | power
 *   power    := call ('^' unary)?          (right-associative; -2^2 is -(2^2))
 *   call     := NAME '(' (expr (',' expr)*)? ')' | NAME | NUMBER | 'true' | 'false' | '(' expr ')'
 *
 * Names are the formula's inputs; functions are the fixed set in FUNCTIONS. Parsing and evaluation
 * never throw: they return an error that says what is wrong and where.
 */

export type Value = number | boolean;

export type Expr =
  | { k: 'num'; v: number }
  | { k: 'bool'; v: boolean }
  | { k: 'var'; name: string }
  | { k: 'un'; op: '-' | '+' | '!'; e: Expr }
  | { k: 'bin'; op: BinaryOp; l: Expr; r: Expr }
  | { k: 'if'; c: Expr; t: Expr; f: Expr }
  | { k: 'call'; fn: string; args: Expr[] };

export type BinaryOp =
  | '||'
  | '&&'
  | '=='
  | '!='
  | '<'
  | '<='
  | '>'
  | '>='
  | '+'
  | '-'
  | '*'
  | '/'
  | '%'
  | '^';

export type Result<T> = { ok: true; value: T } | { ok: false; error: string };

export const MAX_FORMULA_LENGTH = 4096;
const MAX_DEPTH = 64;

const num = (v: Value): number => (typeof v === 'boolean' ? (v ? 1 : 0) : v);
const bool = (v: Value): boolean => (typeof v === 'boolean' ? v : v !== 0);

/** The functions a formula may call, with their arity (min, max). */
export const FUNCTIONS: Record<string, { min: number; max: number; fn: (...a: number[]) => Value }> = {
  abs: { min: 1, max: 1, fn: Math.abs },
  sqrt: { min: 1, max: 1, fn: Math.sqrt },
  floor: { min: 1, max: 1, fn: Math.floor },
  ceil: { min: 1, max: 1, fn: Math.ceil },
  round: {
    min: 1,
    max: 2,
    fn: (x, digits = 0) => {
      const f = 10 ** Math.max(0, Math.min(12, Math.trunc(digits)));
      return Math.round(x * f) / f;
    },
  },
  pow: { min: 2, max: 2, fn: (a, b) => a ** b },
  min: { min: 1, max: 64, fn: Math.min },
  max: { min: 1, max: 64, fn: Math.max },
  avg: { min: 1, max: 64, fn: (...xs) => xs.reduce((s, x) => s + x, 0) / xs.length },
  clamp: { min: 3, max: 3, fn: (x, lo, hi) => Math.min(hi, Math.max(lo, x)) },
};

type Token =
  | { t: 'num'; v: number; at: number }
  | { t: 'name'; v: string; at: number }
  | { t: 'op'; v: string; at: number };

const OPERATORS = [
  '||',
  '&&',
  '==',
  '!=',
  '<=',
  '>=',
  '<',
  '>',
  '+',
  '-',
  '*',
  '/',
  '%',
  '^',
  '!',
  '?',
  ':',
  '(',
  ')',
  ',',
];

function tokenize(text: string): Result<Token[]> {
  const tokens: Token[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    const number = /^(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?/.exec(text.slice(i));
    if (number) {
      tokens.push({ t: 'num', v: Number(number[0]), at: i });
      i += number[0].length;
      continue;
    }
    const name = /^[A-Za-z_][A-Za-z0-9_]*/.exec(text.slice(i));
    if (name) {
      tokens.push({ t: 'name', v: name[0], at: i });
      i += name[0].length;
      continue;
    }
    const op = OPERATORS.find((o) => text.startsWith(o, i));
    if (!op) return { ok: false, error: `unexpected "${c}" at ${i + 1}` };
    tokens.push({ t: 'op', v: op, at: i });
    i += op.length;
  }
  return { ok: true, value: tokens };
}

class Parser {
  #pos = 0;
  #depth = 0;
  readonly #tokens: Token[];
  readonly #length: number;

  constructor(tokens: Token[], length: number) {
    this.#tokens = tokens;
    this.#length = length;
  }

  parse(): Expr {
    const expr = this.#expr();
    const extra = this.#tokens[this.#pos];
    if (extra) throw new SyntaxError(`unexpected "${extra.v}" at ${extra.at + 1}`);
    return expr;
  }

  #peek(): Token | undefined {
    return this.#tokens[this.#pos];
  }

  #isOp(...ops: string[]): string | undefined {
    const token = this.#peek();
    return token?.t === 'op' && ops.includes(token.v) ? token.v : undefined;
  }

  #expect(op: string): void {
    if (!this.#isOp(op)) {
      const token = this.#peek();
      throw new SyntaxError(token ? `expected "${op}" at ${token.at + 1}` : `expected "${op}" at the end`);
    }
    this.#pos++;
  }

  #expr(): Expr {
    if (++this.#depth > MAX_DEPTH) throw new SyntaxError(`nested more than ${MAX_DEPTH} deep`);
    try {
      const c = this.#binary(0);
      if (!this.#isOp('?')) return c;
      this.#pos++;
      const t = this.#expr();
      this.#expect(':');
      const f = this.#expr();
      return { k: 'if', c, t, f };
    } finally {
      this.#depth--;
    }
  }

  static readonly LEVELS: BinaryOp[][] = [
    ['||'],
    ['&&'],
    ['==', '!='],
    ['<', '<=', '>', '>='],
    ['+', '-'],
    ['*', '/', '%'],
  ];

  #binary(level: number): Expr {
    if (level === Parser.LEVELS.length) return this.#unary();
    let left = this.#binary(level + 1);
    for (let op = this.#isOp(...Parser.LEVELS[level]!); op; op = this.#isOp(...Parser.LEVELS[level]!)) {
      this.#pos++;
      left = { k: 'bin', op: op as BinaryOp, l: left, r: this.#binary(level + 1) };
    }
    return left;
  }

  #power(): Expr {
    const base = this.#primary();
    if (!this.#isOp('^')) return base;
    this.#pos++;
    if (++this.#depth > MAX_DEPTH) throw new SyntaxError(`nested more than ${MAX_DEPTH} deep`);
    try {
      return { k: 'bin', op: '^', l: base, r: this.#unary() };
    } finally {
      this.#depth--;
    }
  }

  #unary(): Expr {
    const op = this.#isOp('-', '+', '!');
    if (!op) return this.#power();
    this.#pos++;
    if (++this.#depth > MAX_DEPTH) throw new SyntaxError(`nested more than ${MAX_DEPTH} deep`);
    try {
      return { k: 'un', op: op as '-' | '+' | '!', e: this.#unary() };
    } finally {
      this.#depth--;
    }
  }

  #primary(): Expr {
    const token = this.#peek();
    if (!token) throw new SyntaxError(`the formula ends too soon (at ${this.#length + 1})`);
    this.#pos++;
    if (token.t === 'num') return { k: 'num', v: token.v };
    if (token.t === 'name') {
      if (token.v === 'true' || token.v === 'false') return { k: 'bool', v: token.v === 'true' };
      if (!this.#isOp('(')) return { k: 'var', name: token.v };
      const spec = FUNCTIONS[token.v];
      if (!spec || !Object.hasOwn(FUNCTIONS, token.v))
        throw new SyntaxError(`no function "${token.v}" (at ${token.at + 1})`);
      this.#pos++;
      const args: Expr[] = [];
      if (!this.#isOp(')')) {
        args.push(this.#expr());
        while (this.#isOp(',')) {
          this.#pos++;
          args.push(this.#expr());
        }
      }
      this.#expect(')');
      if (args.length < spec.min || args.length > spec.max) {
        const want = spec.min === spec.max ? `${spec.min}` : `${spec.min} to ${spec.max}`;
        throw new SyntaxError(
          `${token.v}() takes ${want} arguments, not ${args.length} (at ${token.at + 1})`,
        );
      }
      return { k: 'call', fn: token.v, args };
    }
    if (token.v === '(') {
      const inner = this.#expr();
      this.#expect(')');
      return inner;
    }
    throw new SyntaxError(`unexpected "${token.v}" at ${token.at + 1}`);
  }
}

/** Parses a formula; the error names what is wrong and where (1-based character position). */
export function parseFormula(text: string): Result<Expr> {
  if (text.length > MAX_FORMULA_LENGTH)
    return { ok: false, error: `longer than ${MAX_FORMULA_LENGTH} characters` };
  const tokens = tokenize(text);
  if (!tokens.ok) return tokens;
  if (tokens.value.length === 0) return { ok: false, error: 'the formula is empty' };
  try {
    return { ok: true, value: new Parser(tokens.value, text.length).parse() };
  } catch (err) {
    return { ok: false, error: (err as Error).message };
  }
}

/** The input names a formula reads. */
export function variablesOf(expr: Expr, into = new Set<string>()): Set<string> {
  switch (expr.k) {
    case 'var':
      into.add(expr.name);
      break;
    case 'un':
      variablesOf(expr.e, into);
      break;
    case 'bin':
      variablesOf(expr.l, into);
      variablesOf(expr.r, into);
      break;
    case 'if':
      variablesOf(expr.c, into);
      variablesOf(expr.t, into);
      variablesOf(expr.f, into);
      break;
    case 'call':
      for (const a of expr.args) variablesOf(a, into);
      break;
  }
  return into;
}

/** Evaluates a parsed formula; a missing input or a result that is not finite is an error. */
export function evaluate(expr: Expr, inputs: Readonly<Record<string, Value>>): Result<Value> {
  try {
    const value = run(expr, inputs);
    if (typeof value === 'number' && !Number.isFinite(value))
      return { ok: false, error: `the result is ${value}` };
    return { ok: true, value };
  } catch (err) {
    return { ok: false, error: (err as Error).message };
  }
}

function run(e: Expr, inputs: Readonly<Record<string, Value>>): Value {
  switch (e.k) {
    case 'num':
    case 'bool':
      return e.v;
    case 'var': {
      if (!Object.hasOwn(inputs, e.name)) throw new Error(`no input "${e.name}"`);
      return inputs[e.name]!;
    }
    case 'un': {
      const v = run(e.e, inputs);
      return e.op === '!' ? !bool(v) : e.op === '-' ? -num(v) : num(v);
    }
    case 'if':
      return bool(run(e.c, inputs)) ? run(e.t, inputs) : run(e.f, inputs);
    case 'call':
      return FUNCTIONS[e.fn]!.fn(...e.args.map((a) => num(run(a, inputs))));
    case 'bin': {
      if (e.op === '||') return bool(run(e.l, inputs)) || bool(run(e.r, inputs));
      if (e.op === '&&') return bool(run(e.l, inputs)) && bool(run(e.r, inputs));
      const l = run(e.l, inputs);
      const r = run(e.r, inputs);
      switch (e.op) {
        case '==':
          return num(l) === num(r);
        case '!=':
          return num(l) !== num(r);
        case '<':
          return num(l) < num(r);
        case '<=':
          return num(l) <= num(r);
        case '>':
          return num(l) > num(r);
        case '>=':
          return num(l) >= num(r);
        case '+':
          return num(l) + num(r);
        case '-':
          return num(l) - num(r);
        case '*':
          return num(l) * num(r);
        case '/':
          return num(l) / num(r);
        case '%':
          return num(l) % num(r);
        case '^':
          return num(l) ** num(r);
      }
    }
  }
}

/** Prints a tree back as a formula (fully parenthesised), for tests and messages. */
export function formatExpr(e: Expr): string {
  switch (e.k) {
    case 'num':
      return String(e.v);
    case 'bool':
      return String(e.v);
    case 'var':
      return e.name;
    case 'un':
      return `(${e.op}${formatExpr(e.e)})`;
    case 'bin':
      return `(${formatExpr(e.l)} ${e.op} ${formatExpr(e.r)})`;
    case 'if':
      return `(${formatExpr(e.c)} ? ${formatExpr(e.t)} : ${formatExpr(e.f)})`;
    case 'call':
      return `${e.fn}(${e.args.map(formatExpr).join(', ')})`;
  }
}
