"""Signal sources: device profiles, physiological simulators, recording formats, LSL replay.

The ground floor of biostream: no ML, no Ray, no Qt.
"""

import os
from pathlib import Path


def _default_lsl_config() -> None:
    # liblsl logs every start-up at INFO; quiet it, unless the user configured liblsl themselves.
    user_configs = (Path("lsl_api.cfg"), Path.home() / "lsl_api" / "lsl_api.cfg", Path("/etc/lsl_api/lsl_api.cfg"))
    if "LSLAPICFG" not in os.environ and not any(p.exists() for p in user_configs):
        os.environ["LSLAPICFG"] = str(Path(__file__).with_name("lsl_api.cfg"))


_default_lsl_config()
