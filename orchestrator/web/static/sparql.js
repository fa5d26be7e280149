// The SPARQL page's editor and result views: YASGUI (npm @zazuko/yasgui, vendored under static/yasgui/),
// talking only to this service. Queries go to the page's data-endpoint (/ui/sparql/query), which the login
// cookie authenticates (the token never reaches this script); prefixes are completed from our ontology's
// (data-prefixes) instead of prefix.cc; no endpoint catalogue, no LOV look-ups, nothing kept in
// localStorage (a shared browser must not show one user's queries or results to the next).
(function () {
  "use strict";
  var root = document.getElementById("yasgui");
  if (!root || !window.Yasgui) { return; }
  var endpoint = new URL(root.dataset.endpoint, window.location.href).href;  // YASGUI builds URLs from it
  // Only these completers: "properties" and "classes" ask Linked Open Vocabularies' server. Set on the
  // defaults, since YASGUI merges a given list index by index into the default one.
  window.Yasgui.Yasqe.defaults.autocompleters = ["prefixes", "variables"];
  window.Yasgui.defaults.yasqe.autocompleters = ["prefixes", "variables"];
  var yasgui = new window.Yasgui(root, {
    requestConfig: { endpoint: endpoint, method: "POST", headers: {}, withCredentials: false,
                     acceptHeaderGraph: "text/turtle,*/*;q=0.9",
                     acceptHeaderSelect: "application/sparql-results+json,*/*;q=0.9" },
    endpointCatalogueOptions: { getData: function () { return [{ endpoint: endpoint }]; }, keys: [] },
    copyEndpointOnNewTab: true,
    populateFromUrl: false,
    persistenceId: null,
    autofocus: false,
    yasqe: { prefixCcApi: root.dataset.prefixes, persistenceId: null, value: root.dataset.query },
    yasr: { persistenceId: null, prefixes: {}, pluginOrder: ["table", "chart", "response"] }
  });
  var tab = yasgui.getTab();
  if (root.dataset.query) { tab.setQuery(root.dataset.query); }
  window.pht_yasgui = yasgui;  // for the browser tests
}());
