"""The paper's cross-modal embedding provider: an LVM caption, then the CLIP text encoder.

AKB-JSCC (section IV-B) feeds the image and a preset prompt to an LVM (LLaVA-NeXT-7B), encodes
the description with CLIP-ViT-L/14's text encoder and uses that vector as the KB query. This
provider does the same with weights the user already has on disk (nothing is downloaded):

* ``clip_dir``: a Hugging Face folder with a CLIP text model and its tokenizer (e.g. the
  ``text_encoder`` + ``tokenizer`` of stable-diffusion-v1-5, or ``openai/clip-vit-large-patch14``);
* ``captioner``: a callable ``image -> str``, or a folder of a local image-to-text model run through
  ``transformers.pipeline``, with ``prompt`` as the preset prompt.

``embed`` returns the L2-normalised text embedding. A KB built from this provider
(``testbed kb build --provider clip``) stores a PCA projection to the codec's KB dimension, and
the KB applies it before the nearest-neighbour search (:meth:`KnowledgeBase.lookup`).
Requires the ``clip`` extra (``transformers``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from .kb import KbError

DEFAULT_PROMPT = "Describe the main objects, the scene and the textures of this image in one sentence."


class LocalCaptioner:
    """A local image-to-text model (transformers pipeline) with a preset prompt."""

    def __init__(self, model_dir: str | Path, prompt: str = DEFAULT_PROMPT, max_new_tokens: int = 60):
        from transformers import pipeline

        d = Path(model_dir)
        if not d.is_dir():
            raise KbError(f"{d}: captioning model folder not found")
        try:
            self.pipe = pipeline("image-text-to-text", model=str(d), local_files_only=True)
        except Exception as e:  # transformers raises many types for a bad folder
            raise KbError(f"{d}: cannot load an image-to-text model ({e})") from None
        self.prompt, self.max_new_tokens = prompt, max_new_tokens

    def __call__(self, image: np.ndarray) -> str:
        from PIL import Image

        out = self.pipe(images=Image.fromarray(image), text=self.prompt, max_new_tokens=self.max_new_tokens)
        item = out[0] if isinstance(out, list) else out
        return str(item.get("generated_text", item)) if isinstance(item, dict) else str(item)


class CaptionClipProvider:
    name = "caption-clip"

    def __init__(self, clip_dir: str | Path, captioner: Callable[[np.ndarray], str] | str | Path,
                 prompt: str = DEFAULT_PROMPT):
        try:
            import torch
            from transformers import AutoTokenizer, CLIPTextModelWithProjection
        except ImportError:
            raise KbError("the CLIP provider needs transformers: pip install -e '.[clip]'") from None
        d = Path(clip_dir)
        if not d.is_dir():
            raise KbError(f"{d}: CLIP text-encoder folder not found")
        try:
            self.tok = AutoTokenizer.from_pretrained(str(d), local_files_only=True)
            self.model = CLIPTextModelWithProjection.from_pretrained(str(d), local_files_only=True).eval()
        except Exception as e:
            raise KbError(f"{d}: cannot load a CLIP text encoder and tokenizer ({e})") from None
        self.captioner = captioner if callable(captioner) else LocalCaptioner(captioner, prompt)
        self.dim = int(self.model.config.projection_dim)
        self._torch = torch
        self.last_caption = ""

    def text_embedding(self, text: str) -> np.ndarray:
        torch = self._torch
        ids = self.tok([text], padding=True, truncation=True, max_length=self.model.config.max_position_embeddings,
                       return_tensors="pt")
        with torch.no_grad():
            e = self.model(input_ids=ids["input_ids"], attention_mask=ids.get("attention_mask")).text_embeds[0]
        e = e / e.norm().clamp_min(1e-12)
        return e.numpy().astype(np.float32)

    def embed(self, image: np.ndarray) -> np.ndarray:
        self.last_caption = self.captioner(image)
        return self.text_embedding(self.last_caption)
