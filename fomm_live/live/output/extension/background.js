// The service worker: sets the default port on install. The port the camera connects to is chrome.storage.local's
// "port" (fomm-live run --output browser:PORT needs the same number there).
const DEFAULT_PORT = 47120;

chrome.runtime.onInstalled.addListener(async () => {
  const {port} = await chrome.storage.local.get("port");
  if (!port) await chrome.storage.local.set({port: DEFAULT_PORT});
});
