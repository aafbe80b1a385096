"""Output: where finished frames go.

Owns: the sinks (virtual camera, MP4 recording, the recording sink of tests: ``sinks``; the preview window and its
slider panel: ``window``; the browser output, its page and the browser extension it feeds: ``browser``, ``browser_wire``
(headers, handshake), ``browser_page.html``, ``extension/``) and the crash-proof fragmented MP4 recording they write
through (``recording``).
May import: ``live.media``, ``live.errors``, ``live.stats``, ``live.threads`` (when the model leaves a core free),
``live.capture.cameras`` (the platform); PyAV, pyvirtualcam and websockets lazily.
Nothing from the loop or the framing rooms: frames arrive as H x W x 3 uint8 arrays with a ``FrameInfo``.
"""
