"use strict";
// In the extension's isolated world of every page: when the page's camera script (inject.js, in the page's world)
// asks for the fomm-live stream, and the page has the user's permission to use the camera, opens a hidden extension
// frame (frame.html) with a one-time ticket from the service worker and hands it the MessagePort the page's script
// sent, so that the two talk directly; removes the frame when the camera stops. The page cannot tamper with this
// world: the permission is checked here, not in the page's.
const frames = new Map();

async function cameraAllowed() {
  try {
    return (await navigator.permissions.query({name: "camera"})).state === "granted";
  } catch (err) {
    return false;
  }
}

window.addEventListener("message", async (event) => {
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
  if (!(await cameraAllowed())) {
    port.postMessage({refused: "permission"});
    return;
  }
  const {ticket} = await chrome.runtime.sendMessage({fommLive: "ticket?"});
  const frame = document.createElement("iframe");
  frame.src = chrome.runtime.getURL("frame.html") + "#" + ticket;
  frame.style.cssText = "display:none !important";
  frame.setAttribute("aria-hidden", "true");
  frame.addEventListener("load", () => {
    frame.contentWindow.postMessage({fommLive: "port"}, new URL(frame.src).origin, [port]);
  }, {once: true});
  frames.set(data.id, frame);
  (document.body || document.documentElement).appendChild(frame);
});
