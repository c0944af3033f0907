"""The real-time runtime: stream actors, batched inference, prediction streams, recording, ``MonitorSession``.

Plain classes do the work and are tested without Ray (:mod:`~biostream.runtime.engine`,
:mod:`~biostream.runtime.matching`, :mod:`~biostream.runtime.pipeline`, :mod:`~biostream.runtime.recorder`); Ray
hosts them as actors (:mod:`~biostream.runtime.stream_group`, :mod:`~biostream.runtime.inference`) under
:class:`~biostream.runtime.session.MonitorSession`, which the CLI and the desktop app drive. Nothing here is
imported by ``biostream streams``: Ray loads only when a session starts.
"""
