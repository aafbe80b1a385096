"use strict";
// The extension page that connects to fomm-live on 127.0.0.1: its requests carry the extension's own Origin, which
// the output allows (a script in the page's world would send the page's Origin, which it refuses). It connects only
// with a ticket that bridge.js got from the service worker for this frame (a site that embeds this page itself has
// none). It relays what arrives to the page's camera through the MessagePort the page gave it: the stream's
// description as an object, frames as ArrayBuffers (transferred; the page is another process, so the browser still
// copies them: why frames are JPEGs, not raw), and {down: true} when fomm-live stops.
// It connects again every second while fomm-live is not running.
const RETRY_MS = 1000;
// The protocol this extension speaks, named in the address (fomm-live's browser_wire.py): a fomm-live that needs a
// newer one sends a card saying to update the extension instead of the stream.
const PROTOCOL = 2;

function relay(pagePort, tcpPort) {
  let closed = false;
  let socket = null;
  const open = () => {
    if (closed) return;
    socket = new WebSocket(`ws://127.0.0.1:${tcpPort}/stream?protocol=${PROTOCOL}`);
    socket.binaryType = "arraybuffer";
    socket.onmessage = (event) => {
      if (typeof event.data === "string") pagePort.postMessage({info: JSON.parse(event.data)});
      else pagePort.postMessage({frame: event.data}, [event.data]);
    };
    socket.onclose = () => {
      pagePort.postMessage({down: true});
      setTimeout(open, RETRY_MS);
    };
  };
  pagePort.onmessage = (event) => {
    if (event.data && event.data.stop) {
      closed = true;
      if (socket) socket.close();
    }
  };
  open();
}

window.addEventListener("message", async (event) => {
  if (!event.data || event.data.fommLive !== "port" || !event.ports.length) return;
  const ticket = location.hash.slice(1);
  const answer = await chrome.runtime.sendMessage({fommLive: "port?", ticket});
  if (!answer || !answer.port) {
    event.ports[0].postMessage({refused: true});
    return;
  }
  relay(event.ports[0], answer.port);
}, {once: true});
