// Sign a JSON-LD document with the reference implementation, as a fresh Ed25519 key of its own.
// stdin: {document, verificationMethod, controller, created}; stdout: {document, publicKeyMultibase}
import * as Ed25519Multikey from '@digitalbazaar/ed25519-multikey';
import {DataIntegrityProof} from '@digitalbazaar/data-integrity';
import {cryptosuite} from '@digitalbazaar/eddsa-rdfc-2022-cryptosuite';
import jsigs from 'jsonld-signatures';
import {localLoader, readStdinJson} from './loader.mjs';

const {document, verificationMethod, controller, created} = readStdinJson();
const keyPair = await Ed25519Multikey.generate({id: verificationMethod, controller});
const suite = new DataIntegrityProof({signer: keyPair.signer(), cryptosuite, date: created});
const signed = await jsigs.sign(document, {
  suite,
  purpose: new jsigs.purposes.AssertionProofPurpose(),
  documentLoader: localLoader()
});
process.stdout.write(JSON.stringify({document: signed, publicKeyMultibase: keyPair.publicKeyMultibase}));
