// The document loader of the interop scripts: the JSON-LD contexts from trust/contexts/ (the very files the Python
// side serves), security v2 (jsonld-signatures frames controller documents with it), and the verification method and
// its controller document the caller gives. Nothing is fetched from the network: any other URL is an error.
import {readFileSync} from 'node:fs';
import {dirname, join} from 'node:path';
import {fileURLToPath} from 'node:url';
import securityContext from '@digitalbazaar/security-context';

const CONTEXTS_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'trust', 'contexts');

export function readStdinJson() {
  return JSON.parse(readFileSync(0, 'utf8'));
}

// `methods`: [{id, controller, publicKeyMultibase}], each served as a Multikey and its controller document
export function localLoader(methods = []) {
  const documents = new Map();
  const index = JSON.parse(readFileSync(join(CONTEXTS_DIR, 'contexts.json'), 'utf8'));
  for(const [url, file] of Object.entries(index)) {
    documents.set(url, JSON.parse(readFileSync(join(CONTEXTS_DIR, file), 'utf8')));
  }
  for(const [url, context] of securityContext.contexts) {
    documents.set(url, context);
  }
  for(const {id, controller, publicKeyMultibase} of methods) {
    documents.set(id, {
      '@context': 'https://w3id.org/security/multikey/v1',
      id, type: 'Multikey', controller, publicKeyMultibase
    });
    documents.set(controller, {
      '@context': securityContext.SECURITY_CONTEXT_V2_URL,
      id: controller,
      assertionMethod: [id]
    });
  }
  return async url => {
    if(!documents.has(url)) {
      throw new Error(`document ${url} is not served locally`);
    }
    return {contextUrl: null, documentUrl: url, document: structuredClone(documents.get(url))};
  };
}
