"use strict";
// In the extension's isolated world of every page: when the page's camera script (inject.js, in the page's world)
// asks for the fomm-live stream, opens a hidden extension frame (frame.html) and hands it the MessagePort the page's
// script sent, so that the two talk directly; removes the frame when the camera stops. Only this script knows the
// extension's address.
const frames = new Map();

window.addEventListener("message", (event) => {
  const data = event.data;
  if (event.source !== window || !data || typeof data.fommLive !== "string") return;
  if (data.fommLive === "close") {
    const frame = frames.get(data.id);
    if (frame) frame.remove();
    frames.delete(data.id);
    return;
  }
  if (data.fommLive !== "open" || !event.ports.length) return;
  const port = event.ports[0];
  const frame = document.createElement("iframe");
  frame.src = chrome.runtime.getURL("frame.html");
  frame.style.cssText = "display:none !important";
  frame.setAttribute("aria-hidden", "true");
  frame.addEventListener("load", () => {
    frame.contentWindow.postMessage({fommLive: "port"}, new URL(frame.src).origin, [port]);
  }, {once: true});
  frames.set(data.id, frame);
  (document.body || document.documentElement).appendChild(frame);
});
