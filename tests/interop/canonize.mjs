// Canonicalise N-Quads (stdin) with rdf-canonize, algorithm RDFC-1.0; the canonical N-Quads on stdout.
// Optional argument: rdf-canonize's maxWorkFactor (default 1, its own default; the W3C tests of "medium" and "high"
// computational complexity need 2 and 3).
import {readFileSync} from 'node:fs';
import canonize from 'rdf-canonize';

const input = readFileSync(0, 'utf8');
const maxWorkFactor = process.argv[2] === undefined ? 1 : Number(process.argv[2]);
const output = await canonize.canonize(input, {
  algorithm: 'RDFC-1.0', inputFormat: 'application/n-quads', maxWorkFactor
});
process.stdout.write(output);
