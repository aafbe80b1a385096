"use strict";
// The extension page that connects to fomm-live on 127.0.0.1: its requests carry the extension's own Origin, which
// the output allows (a script in the page's world would send the page's Origin, which it refuses). It relays what
// arrives to the page's camera through the MessagePort the page gave it: the stream's description as an object,
// frames as ArrayBuffers (transferred, not copied), and {down: true} when fomm-live stops. It connects again every
// second while fomm-live is not running.
const DEFAULT_PORT = 47120;
const RETRY_MS = 1000;

function relay(pagePort, tcpPort) {
  let closed = false;
  let socket = null;
  const open = () => {
    if (closed) return;
    socket = new WebSocket(`ws://127.0.0.1:${tcpPort}/stream`);
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
  let tcpPort = DEFAULT_PORT;
  try {
    tcpPort = (await chrome.runtime.sendMessage({fommLive: "port?"})).port;
  } catch (err) {
    console.warn("fomm-live: no port setting, using the default", err);
  }
  relay(event.ports[0], tcpPort);
});
