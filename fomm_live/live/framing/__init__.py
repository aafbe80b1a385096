"""Framing and paste-back: the output frame made from the source photo and the backend's rendered face.

Owns: where the face square sits in the framed photo (``layout``), the one compositor interface that the loop
pastes through (``compositor``: ``make_compositor`` chooses once, ``paste(rendered)`` per frame), and the
paste-backs behind it: the mask and the plain OpenCV paste (``pasteback``), FOMM's detail transfer on the host
(``pasteback_field``) and on the model's device (``pasteback_torch``), the landmark warp (``pasteback_map``).
May import: ``live.backends`` (the ``Rendered`` result it pastes), ``live.avatars``, ``live.face``, ``live.compose``,
``live.media``; torch and ``models.animator.download_image`` only in ``pasteback_torch`` and where a device frame is
downloaded. Nothing from the loop or the outputs.
"""
