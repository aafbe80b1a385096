"use strict";
// The service worker: answers the extension frames' question "which port?" with chrome.storage.local's "port"
// (set on the options page, for fomm-live run --output browser:PORT), or the output's default.
const DEFAULT_PORT = 47120;

chrome.runtime.onMessage.addListener((message, sender, reply) => {
  if (!message || message.fommLive !== "port?") return false;
  chrome.storage.local.get("port").then(({port}) => reply({port: Number(port) || DEFAULT_PORT}));
  return true;  // replies asynchronously
});
