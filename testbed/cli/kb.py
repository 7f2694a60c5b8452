"""``testbed kb build``: a source knowledge base from a folder of images."""
from __future__ import annotations

from ..core.checks import number
from .common import SEED_TYPE


def add_parsers(sub, common) -> None:
    kbp = sub.add_parser("kb", help="source knowledge base")
    kbsub = kbp.add_subparsers(dest="what", required=True, metavar="{build}")
    kbb = kbsub.add_parser("build", parents=[common], help="build a source KB from a folder of images")
    kbb.add_argument("--data", required=True, help="folder of images")
    kbb.add_argument("--model", default="akb-v1", help="AKB codec whose embedder and KB size to use (default: %(default)s)")
    kbb.add_argument("--provider", choices=["image", "clip"], default="image",
                     help="image: the model's embedder.onnx; clip: LVM caption + CLIP text encoder (local weights)")
    kbb.add_argument("--clip-dir", help="clip: folder with a CLIP text encoder and tokenizer")
    kbb.add_argument("--captioner", help="clip: folder of a local image-to-text model")
    kbb.add_argument("--entries", type=number(int, lo=1, hi=255), default=64,
                     help="KB entries, 1..255 (the header's KB index has 8 bits, 255 = no KB; default %(default)s)")
    kbb.add_argument("--crops-per-image", type=number(int, lo=0, hi=1000), default=4,
                     help="random crops embedded per image besides the whole image (0..1000; default %(default)s)")
    kbb.add_argument("--seed", type=SEED_TYPE, default=0)
    kbb.add_argument("--out", required=True, help="KB file to write (.npz)")
    kbb.set_defaults(func=_cmd_kb_build)


def _cmd_kb_build(a) -> int:
    import numpy as np
    from tqdm import tqdm

    from ..akb.runtime import AkbCodec
    from ..akb.source_kb.kb import KbError, OnnxEmbedderProvider, build_kb
    from ..core.images import load_images
    from ..core.runlog import to_json
    from ..zoo import open_codec

    codec = open_codec(a.model)
    if not isinstance(codec, AkbCodec):
        raise ValueError(f"--model {a.model}: {codec.name} is not an AKB codec (a source KB conditions an AKB codec)")
    if a.provider == "clip":
        if not a.clip_dir or not a.captioner:
            raise ValueError("--provider clip needs --clip-dir and --captioner")
        from ..akb.source_kb.clip_provider import CaptionClipProvider

        provider = CaptionClipProvider(a.clip_dir, a.captioner)
    else:
        provider = OnnxEmbedderProvider(codec.dir / codec.card.graphs["embedder"]["file"])
    images, skipped = load_images(a.data)
    with tqdm(total=len(images), desc="kb build", unit="img") as bar:
        try:
            kb = build_kb(provider, [im for _, im in images], a.entries, codec.kb_dim, np.random.default_rng(a.seed),
                          crops_per_image=a.crops_per_image, progress=bar.update)
        except KbError as e:
            raise ValueError(f"{e} (--entries {a.entries}, --crops-per-image {a.crops_per_image}, "
                             f"{len(images)} images in {a.data})") from None
    kb.meta.update({"data": str(a.data), "model": codec.name})
    kb.save(a.out)
    res = {"kb": str(a.out), "sha256": kb.sha256, "entries": len(kb), "provider": kb.provider,
           "images": len(images), "skipped": skipped}
    print(to_json(res) if a.json else f"KB {a.out}: {len(kb)} entries from {len(images)} images, "
          f"provider {kb.provider}, sha256 {kb.sha256[:16]}")
    return 0
