"use strict";
// The service worker: hands out one-time tickets to open the extension's frame, and the port to the frame that
// redeems one. Only the extension's own scripts can message it (web pages cannot), so a website that embeds
// frame.html itself has no ticket, and its frame never connects: without this any site could watch the stream
// through the extension's frame, whose Origin fomm-live accepts.
const DEFAULT_PORT = 47120;
const TICKET_MS = 30000;

chrome.runtime.onMessage.addListener((message, sender, reply) => {
  if (!message || sender.id !== chrome.runtime.id) return false;
  if (message.fommLive === "ticket?" && sender.tab) {  // from bridge.js, in a page the user has let use the camera
    const ticket = crypto.randomUUID();
    chrome.storage.session.set({[ticket]: Date.now()}).then(() => reply({ticket}));
    return true;  // replies asynchronously
  }
  if (message.fommLive === "port?" && sender.url && sender.url.startsWith(chrome.runtime.getURL("frame.html"))) {
    const ticket = String(message.ticket || "");
    Promise.all([chrome.storage.session.get(ticket), chrome.storage.local.get("port")]).then(([found, {port}]) => {
      const issued = ticket && found[ticket];
      if (ticket) chrome.storage.session.remove(ticket);
      reply(issued && Date.now() - issued < TICKET_MS ? {port: Number(port) || DEFAULT_PORT} : {refused: true});
    });
    return true;
  }
  return false;
});
