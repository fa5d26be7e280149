// Verify a JSON-LD document's proof with the reference implementation.
// stdin: {document, verificationMethod, controller, publicKeyMultibase}; stdout: {verified, error}
import {DataIntegrityProof} from '@digitalbazaar/data-integrity';
import {cryptosuite} from '@digitalbazaar/eddsa-rdfc-2022-cryptosuite';
import jsigs from 'jsonld-signatures';
import {localLoader, readStdinJson} from './loader.mjs';

const {document, verificationMethod, controller, publicKeyMultibase} = readStdinJson();
const result = await jsigs.verify(document, {
  suite: new DataIntegrityProof({cryptosuite}),
  purpose: new jsigs.purposes.AssertionProofPurpose(),
  documentLoader: localLoader([{id: verificationMethod, controller, publicKeyMultibase}])
});
const errors = result.error?.errors ?? (result.error ? [result.error] : []);
process.stdout.write(JSON.stringify({
  verified: result.verified,
  error: errors.map(error => error.message).join('; ') || null
}));
