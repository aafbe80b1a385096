"use strict";
const DEFAULT_PORT = 47120;
const input = document.getElementById("port");
chrome.storage.local.get("port").then(({port}) => { input.value = port || DEFAULT_PORT; });
document.getElementById("save").addEventListener("click", async () => {
  const port = Number(input.value);
  const ok = Number.isInteger(port) && port >= 1 && port <= 65535;
  if (ok) await chrome.storage.local.set({port});
  document.getElementById("said").textContent = ok ? "saved: calls started from now on use it" : "1 to 65535";
});
