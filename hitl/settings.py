"""All knobs in one dataclass, and the session folder layout.

Nothing under hitl/ reads flags or environment variables: app.py builds a Settings and
everything else receives it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

MODES = ("frozen", "finetune")
DEVICES = ("auto", "cpu", "cuda", "mps")
DEFAULT_BACKBONE = "vit_small_patch16_dinov3.lvd1689m"
DEFAULT_FINETUNE_MODEL = "resnet18"
BACKBONE_PRESETS: dict[str, str] = {
    "DINOv3 small": DEFAULT_BACKBONE,
    "DINOv3 large": "vit_large_patch16_dinov3.lvd1689m",
}


DB_NAME = "hitl.duckdb"
CHECKPOINTS = "checkpoints"
MODEL_STATE = "model_state.pt"


def _in_session(*parts: str) -> property:
    """A path inside the session folder, as a read-only attribute."""
    return property(lambda self: Path(self.session_dir, *parts))


def default_session_dir() -> Path:
    """A Space with persistent storage mounts /data; keep labels there when it exists."""
    return Path("/data/session") if Path("/data").is_dir() else Path("session")


@dataclass
class Settings:
    session_dir: Path = field(default_factory=default_session_dir)
    images: list[str] = field(default_factory=list)
    task: str | None = None
    classes: list[str] = field(default_factory=list)
    imports: list[str] = field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = 7860
    share: bool = False
    auth: list[tuple[str, str]] = field(default_factory=list)
    auth_file: Path | None = None
    allow_anonymous: bool = False
    # Sign in with Hugging Face (a Space with hf_oauth: true): who may label / administer
    hf_users: list[str] = field(default_factory=list)
    hf_orgs: list[str] = field(default_factory=list)
    hf_admins: list[str] = field(default_factory=list)
    # a Hugging Face Space (app.py reads SPACE_ID, SPACE_AUTHOR_NAME, OAUTH_CLIENT_ID): its
    # anonymous visitors label at most; its owner, signed in, administers (hitl/access.py)
    space_id: str | None = None
    space_owner: str | None = None
    hf_oauth: bool = False  # the Space has `hf_oauth: true` (Sign in with Hugging Face works)
    rest: bool = True  # the REST API under /api/v1 (hitl/rest.py)
    forwarded_allow_ips: list[str] = field(default_factory=list)  # trusted for X-Forwarded-For
    device: str = "auto"
    backbone: str = DEFAULT_BACKBONE
    finetune_model: str = DEFAULT_FINETUNE_MODEL
    mode: str = "frozen"
    seg_long_side: int = 512
    weights_dir: Path = Path("weights")
    train: bool = True
    pretrained: bool = True
    demo_count: int = 240
    demo_seed: int = 0
    lease_seconds: float = 600.0
    max_image_pixels: int = 100_000_000
    batch_size: int = 16
    val_every: int = 5  # one image in val_every goes to the validation split
    verbose: bool = False
    catalog_in_background: bool = False  # app.py: serve at once, register --images meanwhile

    # the session folder's layout
    db_path = _in_session(DB_NAME)
    features_dir = _in_session("features")
    checkpoints_dir = _in_session(CHECKPOINTS)
    model_state_path = _in_session(CHECKPOINTS, MODEL_STATE)  # the trainer's latest model
    demo_dir = _in_session("demo")
    downloads_dir = _in_session("downloads")
