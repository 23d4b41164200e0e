/** The multipart/mixed parser and Content-Disposition file names of the federation media endpoints (no I/O). */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  dispositionFileName,
  mediaMultipartFrame,
  mixedBoundary,
  MultipartError,
  parseMultipart,
} from '../../src/media/multipart.js';

describe('multipart/mixed', () => {
  it('round-trips the frame written by the federation endpoints', () => {
    const { head, tail } = mediaMultipartFrame('abc', { 'Content-Type': 'image/png' });
    const content = Buffer.from('\r\n--ab not the boundary\r\n');
    const parts = parseMultipart(Buffer.concat([head, content, tail]), 'abc');
    assert.equal(parts.length, 2);
    assert.equal(parts[0]?.headers['content-type'], 'application/json');
    assert.equal(parts[0]?.body.toString(), '{}');
    assert.equal(parts[1]?.headers['content-type'], 'image/png');
    assert.deepEqual(parts[1]?.body, content);
  });

  it('accepts a preamble, transport padding, a part without headers and an epilogue', () => {
    const body = 'ignored preamble\r\n--b  \r\n\r\n{}\r\n--b\r\nX-A: 1\r\n\r\ndata\r\n--b--\r\nepilogue';
    const parts = parseMultipart(Buffer.from(body), 'b');
    assert.deepEqual(parts[0]?.headers, {});
    assert.equal(parts[1]?.headers['x-a'], '1');
    assert.equal(parts[1]?.body.toString(), 'data');
  });

  it('rejects unterminated and malformed bodies', () => {
    const bad = [
      'no delimiter at all',
      '--b\r\n\r\n{}\r\n--b\r\nContent-Type: text/plain\r\n\r\nno end',
      '--b\r\nbad header line\r\n\r\n{}\r\n--b--',
      '--bX\r\n\r\n{}\r\n--b--',
    ];
    for (const body of bad) assert.throws(() => parseMultipart(Buffer.from(body), 'b'), MultipartError, body);
  });

  it('reads the boundary of multipart/mixed only', () => {
    assert.equal(mixedBoundary('multipart/mixed; boundary=abc'), 'abc');
    assert.equal(mixedBoundary('Multipart/Mixed; charset=x; boundary="a b"'), 'a b');
    assert.equal(mixedBoundary('multipart/form-data; boundary=abc'), undefined);
    assert.equal(mixedBoundary('multipart/mixed'), undefined);
    assert.equal(mixedBoundary(undefined), undefined);
  });

  it('decodes Content-Disposition file names (filename* first)', () => {
    assert.equal(dispositionFileName('inline; filename=a.png'), 'a.png');
    assert.equal(dispositionFileName('attachment; filename="a \\"b\\".txt"'), 'a "b".txt');
    assert.equal(
      dispositionFileName("inline; filename*=utf-8''notes%20%C3%A4.txt; filename=x"),
      'notes ä.txt',
    );
    assert.equal(dispositionFileName("inline; filename*=iso-8859-1''caf%E9"), 'café');
    assert.equal(dispositionFileName("inline; filename*=utf-8''%FF; filename=fallback"), 'fallback');
    assert.equal(dispositionFileName('inline'), undefined);
  });
});
