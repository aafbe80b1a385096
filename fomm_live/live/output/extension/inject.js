"use strict";
// In the page's own world, at document start in every frame: adds the "fomm-live" camera to
// navigator.mediaDevices.enumerateDevices() and answers getUserMedia() for it with a track of the frames that
// fomm-live sends (through the extension frame that bridge.js opens), each a WebCodecs VideoFrame: a JPEG decoded by
// the browser (or raw I420 taken as it is; or, in the "jpeg-rect" format, the JPEG of the rectangle that changed,
// copied into the page's whole frame). Every other camera is untouched.
// While fomm-live is not running the stream shows a still card saying so; when it stops mid-call the last frame is
// held for HOLD_MS, then the card returns; frames resume when it starts again.
(() => {
  const devices = navigator.mediaDevices;
  if (!devices || devices.__fommLive) return;
  Object.defineProperty(devices, "__fommLive", {value: true});

  const LABEL = "fomm-live";
  // Stable ids, shaped like Chromium's (64 hex digits).
  const DEVICE_ID = "f0bb11fe".repeat(8);
  const GROUP_ID = "f0bb11fe0000".repeat(5) + "f0bb";
  const HOLD_MS = 2000;
  const DEFAULT = {width: 1280, height: 720, fps: 30};
  const FORMATS = ["jpeg-rect", "jpeg", "i420"];  // the picture formats this extension shows

  const originalEnumerate = devices.enumerateDevices.bind(devices);
  const originalGetUserMedia = devices.getUserMedia.bind(devices);

  function deviceInfo(exposed) {
    const base = typeof InputDeviceInfo === "function" ? InputDeviceInfo.prototype : Object.prototype;
    const info = Object.create(base);
    const fields = {deviceId: exposed ? DEVICE_ID : "", kind: "videoinput", label: exposed ? LABEL : "",
                    groupId: exposed ? GROUP_ID : ""};
    for (const [name, value] of Object.entries(fields)) {
      Object.defineProperty(info, name, {value, enumerable: true});
    }
    info.getCapabilities = () => ({deviceId: fields.deviceId, groupId: fields.groupId,
                                   width: {min: 1, max: 1920}, height: {min: 1, max: 1080},
                                   frameRate: {min: 1, max: 60}, facingMode: [], resizeMode: ["none"]});
    info.toJSON = () => ({...fields});
    return info;
  }

  devices.enumerateDevices = async function enumerateDevices() {
    const list = await originalEnumerate();
    // Before the page has the camera permission, browsers give empty ids and labels: do the same.
    const exposed = list.some((d) => d.label) || !list.some((d) => d.kind === "videoinput");
    return [...list, deviceInfo(exposed)];
  };

  function wantsUs(video) {
    if (!video || typeof video !== "object") return false;
    const id = video.deviceId;
    if (!id) return false;
    const values = typeof id === "string" || Array.isArray(id) ? [id] : [id.exact, id.ideal];
    return values.flat().includes(DEVICE_ID);
  }

  async function noRealCamera() {
    return !(await originalEnumerate()).some((d) => d.kind === "videoinput");
  }

  // The fomm-live camera asks the user's permission as any camera does: a page the user has not let use the camera
  // gets the browser's own prompt (through a real camera, stopped at once) and NotAllowedError when refused.
  // bridge.js checks the permission again, out of the page's reach. With no real camera there is nothing to prompt
  // with: the camera must be allowed in the site's settings.
  async function ensurePermission() {
    try {
      if ((await navigator.permissions.query({name: "camera"})).state === "granted") return;
    } catch (err) {
      // no Permissions API for the camera here: ask through a real camera
    }
    let probe;
    try {
      probe = await originalGetUserMedia({video: true});
    } catch (err) {
      if (err.name !== "NotFoundError") throw err;
      throw new DOMException("fomm-live: allow this site to use the camera in its settings (there is no other " +
                             "camera to ask with)", "NotAllowedError");
    }
    probe.getTracks().forEach((track) => track.stop());
  }

  devices.getUserMedia = async function getUserMedia(constraints) {
    // Any camera asked for on a machine with no real one: fomm-live's is the camera there is.
    const ours = constraints && (wantsUs(constraints.video) || (constraints.video && await noRealCamera()));
    if (!ours) return originalGetUserMedia(constraints);
    await ensurePermission();
    const stream = new MediaStream([await openCamera()]);
    if (constraints.audio) {
      const audio = await originalGetUserMedia({audio: constraints.audio});
      audio.getAudioTracks().forEach((track) => stream.addTrack(track));
    }
    return stream;
  };

  let sessions = 0;

  const NOT_RUNNING = ["fomm-live is not running", "start it with: fomm-live run --output browser"];
  // fomm-live sends pictures in a format newer than this extension knows (an older fomm-live's formats it shows).
  const outdated = (format) => ["Update the fomm-live extension",
                                `fomm-live sends "${format}" pictures, which this version cannot show`];

  function drawCard(context, width, height, [title, hint]) {
    context.fillStyle = "#1d2330";
    context.fillRect(0, 0, width, height);
    context.fillStyle = "#e8e8e8";
    context.textAlign = "center";
    context.font = `bold ${Math.round(height / 12)}px sans-serif`;
    context.fillText(title, width / 2, height * 0.45);
    context.fillStyle = "#9aa3b0";
    context.font = `${Math.round(height / 24)}px sans-serif`;
    context.fillText(hint, width / 2, height * 0.58);
  }

  // The stream opens at the output's size when fomm-live answers within READY_MS; else at the card's, and changes
  // size when fomm-live starts.
  const READY_MS = 1000;
  // Chromium's MediaStreamTrackGenerator takes VideoFrames as they come, with no canvas and no timer (timers in a
  // hidden tab run once a second at most). Elsewhere (a browser without it or without WebCodecs' VideoFrame) the
  // pictures are drawn on a canvas that is captured. WebCodecs is looked up when a camera opens, not when this
  // script loads, so that what the page's world has then decides.
  const hasFrames = () => typeof window.VideoFrame === "function";
  const widthOf = (image) => image.displayWidth || image.width;
  const heightOf = (image) => image.displayHeight || image.height;

  // A track fed pictures: show(image) sends a copy of `image` (a canvas, VideoFrame or ImageBitmap, which stays the
  // caller's). `via`: "generator" or "canvas".
  function frameTrack(size) {
    const Generator = window.MediaStreamTrackGenerator;
    if (typeof Generator === "function" && hasFrames()) {
      const track = new Generator({kind: "video"});
      const writer = track.writable.getWriter();
      return {track, via: "generator", show: (image) => {
        const frame = new VideoFrame(image, {timestamp: micros()});
        writer.write(frame).catch(() => frame.close());
      }};
    }
    const canvas = document.createElement("canvas");
    canvas.width = size.width;
    canvas.height = size.height;
    const context = canvas.getContext("2d");
    const track = canvas.captureStream(size.fps).getVideoTracks()[0];
    return {track, via: "canvas", show: (image) => {
      if (canvas.width !== widthOf(image) || canvas.height !== heightOf(image)) {
        canvas.width = widthOf(image);
        canvas.height = heightOf(image);
      }
      context.drawImage(image, 0, 0);
    }};
  }

  const micros = () => Math.round(performance.now() * 1000);

  // An I420 picture (Y, U, V planes after the 12-byte header) as a VideoFrame, the buffer handed over, not copied,
  // where the browser allows it.
  function i420Frame(buffer, width, height) {
    const ySize = width * height;
    const init = {format: "I420", codedWidth: width, codedHeight: height, timestamp: micros(),
                  layout: [{offset: 12, stride: width}, {offset: 12 + ySize, stride: width / 2},
                           {offset: 12 + ySize * 5 / 4, stride: width / 2}]};
    try {
      return new VideoFrame(buffer, {...init, transfer: [buffer]});
    } catch (err) {
      return new VideoFrame(buffer, init);
    }
  }

  // A JPEG as a VideoFrame. WebCodecs' ImageDecoder hands over the decoded YUV planes: 3.4-4.2 ms of the page's
  // CPU a 1280x720 frame against 6.6 ms through createImageBitmap and 7.8 ms drawn on a canvas (Chromium 156 on the
  // 2-core test CPU, RESULTS.md 2026-12-07). An ImageBitmap from createImageBitmap where there is no ImageDecoder.
  async function jpegFrame(bytes) {
    const Decoder = window.ImageDecoder;
    if (typeof Decoder === "function") {
      const decoder = new Decoder({type: "image/jpeg", data: bytes});
      try {
        const {image} = await decoder.decode();
        return image;
      } finally {
        decoder.close();
      }
    }
    return createImageBitmap(new Blob([bytes], {type: "image/jpeg"}));
  }

  // "jpeg-rect": the page's copy of the whole frame, as I420 planes in one buffer, each plane followed by one spare
  // row: the browser counts a copyTo destination plane as stride x rows from its offset, and a rectangle's plane
  // starts x bytes into its first row, so its span ends up to a row past the plane. A rectangle decodes (YUV, with
  // ImageDecoder) straight into the buffer at its place; a VideoFrame is made from the buffer for each picture.
  // Where a decoder gives no I420 frame (createImageBitmap, or ImageDecoder handing RGB), or where VideoFrame cannot
  // be made, the copy is a canvas.
  function frameCopy(width, height) {
    const ySize = width * (height + 1);
    const cSize = (width / 2) * (height / 2 + 1);
    const buffer = new Uint8Array(ySize + 2 * cSize);
    const layout = [{offset: 0, stride: width}, {offset: ySize, stride: width / 2},
                    {offset: ySize + cSize, stride: width / 2}];
    return {width, height, buffer, layout, picture: 0, canvas: null};
  }

  // A frame made from the copy after the rectangle `part` (a VideoFrame or ImageBitmap, which it closes) went on it
  // at (x, y); `last` is the frame the page shows now (the copy's content, for a switch to the canvas).
  async function onCopy(copy, part, x, y, last) {
    const planar = hasFrames() && part.format === "I420" && part.visibleRect && part.visibleRect.x === 0 &&
                   part.visibleRect.y === 0 && x % 2 === 0 && y % 2 === 0;
    try {
      if (planar && !copy.canvas) {
        const {width, height, layout} = copy;
        const at = (plane, px, py) => layout[plane].offset + py * layout[plane].stride + px;
        await part.copyTo(copy.buffer, {layout: [{offset: at(0, x, y), stride: width},
                                                 {offset: at(1, x / 2, y / 2), stride: width / 2},
                                                 {offset: at(2, x / 2, y / 2), stride: width / 2}]});
        // The JPEG's colours: full-range BT.601 YCbCr, not the limited range a VideoFrame of planes assumes.
        copy.colorSpace = part.colorSpace.toJSON();
        return new VideoFrame(copy.buffer, {format: "I420", codedWidth: width, codedHeight: height,
                                            timestamp: micros(), layout, colorSpace: copy.colorSpace});
      }
      if (!copy.canvas) {
        copy.canvas = new OffscreenCanvas(copy.width, copy.height);
        copy.context = copy.canvas.getContext("2d");
        if (last && (x || y || widthOf(part) !== copy.width || heightOf(part) !== copy.height)) {
          copy.context.drawImage(last, 0, 0);
        }
      }
      copy.context.drawImage(part, x, y);
      return hasFrames() ? new VideoFrame(copy.canvas, {timestamp: micros()}) : createImageBitmap(copy.canvas);
    } finally {
      part.close();
    }
  }

  // A "jpeg-rect" message (24-byte header: number, received ms, the picture it goes on or 0, x, y, width, height;
  // then the JPEG) as the frame to show; null when it goes on a picture this page does not have (it waits for the
  // next whole frame, which fomm-live sends at least every 2 s).
  async function rectFrame(buffer, size, copy, last) {
    const header = new DataView(buffer, 0, 24);
    const number = header.getUint32(0, true);
    const base = header.getUint32(12, true);
    const [x, y] = [header.getUint16(16, true), header.getUint16(18, true)];
    if (base === 0) {
      if (copy.width !== size.width || copy.height !== size.height) Object.assign(copy, frameCopy(size.width,
                                                                                                  size.height));
      copy.canvas = null;  // a whole frame: the planes again where the decoder gives them
    } else if (base !== copy.picture) {
      return null;
    }
    copy.picture = 0;  // until this one is on the copy
    const decoded = await jpegFrame(new Uint8Array(buffer, 24));
    const frame = await onCopy(copy, decoded, x, y, last);
    copy.picture = number;
    return frame;
  }

  function openCamera() {
    const id = `${Date.now()}-${++sessions}`;
    let size = {...DEFAULT};
    const card = document.createElement("canvas");
    const cardContext = card.getContext("2d");
    const {track, via, show} = frameTrack(size);
    let last = null;  // the newest picture (a VideoFrame or ImageBitmap kept open: repeats and the hold show copies)
    const copy = frameCopy(2, 2);  // "jpeg-rect": the whole frame the rectangles go on
    let lastFrameAt = 0;
    let stopped = false;
    let showing = "card";
    let cardText = NOT_RUNNING;  // what the card says
    let ready;
    const answered = new Promise((resolve) => { ready = resolve; });

    function showCard() {
      if (card.width !== size.width || card.height !== size.height) {
        card.width = size.width;
        card.height = size.height;
      }
      drawCard(cardContext, card.width, card.height, cardText);
      show(card);
    }
    function showLast() {
      if (last) show(last);
    }
    showCard();

    const channel = new MessageChannel();
    const port = channel.port1;
    port.onmessage = (event) => {
      const data = event.data;
      if (stopped || !data) return;
      if (data.down) {
        cardText = NOT_RUNNING;
        ready();
      }
      if (data.info) {
        size = {width: data.info.width, height: data.info.height, fps: data.info.fps,
                format: data.info.format || "jpeg"};
        cardText = FORMATS.includes(size.format) ? NOT_RUNNING : outdated(size.format);
        if (!FORMATS.includes(size.format)) showing = "card";
        if (showing === "card") showCard();
        ready();
      } else if (data.frame) {
        // A frame that arrives while one is decoding replaces the one waiting; in "jpeg-rect" the rectangles
        // queue (each goes on the one before), and a whole frame replaces the queue.
        if (size.format !== "jpeg-rect" || isWhole(data.frame)) pending.length = 0;
        pending.push(data.frame);
        if (!decoding) draw();
      }
    };
    const isWhole = (buffer) => buffer.byteLength > 24 && new DataView(buffer, 12, 4).getUint32(0, true) === 0;

    // Shows the newest frame; one JPEG decode at a time, so a slow page skips frames instead of queueing (in
    // "jpeg-rect", rectangles until the next whole frame, at most 2 s of them). A message that is the header alone
    // repeats the last picture.
    const pending = [];
    let decoding = false;
    async function draw() {
      decoding = true;
      while (pending.length && !stopped) {
        const buffer = pending.shift();
        const header = new DataView(buffer, 0, 12);
        const number = header.getUint32(0, true);
        const receivedAt = header.getFloat64(4, true);
        let frame = null;
        try {
          if (buffer.byteLength === (size.format === "jpeg-rect" ? 24 : 12)) {
            if (!last) continue;
          } else if (size.format === "jpeg-rect") {
            frame = await rectFrame(buffer, size, copy, last);
            if (!frame) continue;
          } else if (size.format === "i420") {
            frame = i420Frame(buffer, size.width, size.height);
          } else if (size.format !== "jpeg") {
            continue;  // a format of a newer fomm-live: the card saying to update the extension stays
          } else {
            frame = await jpegFrame(new Uint8Array(buffer, 12));
          }
        } catch (err) {
          continue;  // a damaged frame: the next one replaces it
        }
        if (stopped) {
          if (frame) frame.close();
          break;
        }
        if (frame) {
          if (last) last.close();
          last = frame;
        }
        showLast();
        lastFrameAt = performance.now();
        showing = "stream";
        // For measurements (the output's own page and benchmarks): when each frame was shown, in epoch ms.
        window.dispatchEvent(new CustomEvent("fomm-live-frame", {
          detail: {number, receivedAt, drawnAt: performance.timeOrigin + performance.now(), repeat: !frame,
                   // "jpeg-rect": where the page keeps its copy of the frame (I420 planes, or a canvas)
                   copy: size.format === "jpeg-rect" ? (copy.canvas ? "canvas" : "planes") : null,
                   track: via}}));  // how the track is fed: "generator" or "canvas" (the fallback)
      }
      decoding = false;
    }
    // Holds the last frame HOLD_MS after fomm-live stops, then shows the card; the last picture is shown again
    // while nothing new arrives, so that the track keeps sending frames (a call's encoder may wait for them).
    const timer = setInterval(() => {
      if (stopped) return;
      if (showing === "stream" && performance.now() - lastFrameAt > HOLD_MS) showing = "card";
      if (showing === "card") showCard();
      else if (performance.now() - lastFrameAt > 500) showLast();
    }, 250);
    window.postMessage({fommLive: "open", id}, "*", [channel.port2]);

    const stop = track.stop.bind(track);
    const settings = () => ({deviceId: DEVICE_ID, groupId: GROUP_ID, width: size.width, height: size.height,
                             frameRate: size.fps, aspectRatio: size.width / size.height, resizeMode: "none"});
    Object.defineProperties(track, {
      label: {get: () => LABEL},
      getSettings: {value: settings},
      getCapabilities: {value: () => deviceInfo(true).getCapabilities()},
      getConstraints: {value: () => ({deviceId: {exact: DEVICE_ID}})},
      applyConstraints: {value: async () => undefined},
      stop: {value: () => {
        if (stopped) return;
        stopped = true;
        clearInterval(timer);
        if (last) last.close();
        last = null;
        port.postMessage({stop: true});
        port.close();
        window.postMessage({fommLive: "close", id}, "*");
        stop();
      }},
    });
    return Promise.race([answered, new Promise((resolve) => setTimeout(resolve, READY_MS))]).then(() => track);
  }
})();
