import assert from 'node:assert/strict';
import { test } from 'node:test';
import { splitCsv } from '../src/core/user-import.js';

test('a CSV line splits into its fields, with RFC 4180 quoting', () => {
  const cases: Array<[string, string[] | undefined]> = [
    ['', ['']],
    ['a,b,c', ['a', 'b', 'c']],
    ['a,,c,', ['a', '', 'c', '']],
    ['"Orter, 5",x', ['Orter, 5', 'x']],
    ['"say ""hi""",x', ['say "hi"', 'x']],
    ['"""",x', ['"', 'x']],
    ['"",x', ['', 'x']],
    // A quote inside an unquoted field is a character like any other.
    ['a"b,c', ['a"b', 'c']],
    // What follows a closing quote up to the comma stays, as before the rewrite.
    ['"a"b,c', ['ab', 'c']],
    [
      'u1,"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g",bench',
      ['u1', '$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g', 'bench'],
    ],
    ['"unbalanced,x', undefined],
    ['a,"b""', undefined],
  ];
  for (const [line, fields] of cases) assert.deepEqual(splitCsv(line), fields, line);
});
