"""Executable node classes (Pillow based, no models, no GPU).

Model-free image nodes do real work on real pixels: ``EmptyImage``, ``ImageBlur``,
``ImageScale``, ``ImageScaleBy``, ``ImageInvert``, ``LoadImage``, ``SaveImage``
(real PNGs with ``prompt``/``extra_pnginfo`` text chunks), ``PreviewImage`` and
``SaveImageWebsocket``.

The SD1.5 txt2img nodes (``CheckpointLoaderSimple``, ``LoraLoader``,
``CLIPTextEncode``, ``EmptyLatentImage``, ``KSampler``, ``VAEDecode``) pass light
references around and ``VAEDecode`` paints a deterministic synthetic picture
derived from the checkpoint, LoRAs, seed, sampler settings and prompt texts.
``KSampler`` drives a progress bar (``progress`` value 1..steps).

Every other class of ``/object_info`` validates like on the real server but
raises a ``NotImplementedError`` execution error when it would run.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from PIL import Image, ImageDraw, ImageFilter, ImageOps, ImageSequence
from PIL.PngImagePlugin import PngInfo

log = logging.getLogger("comfysim.nodes")

T = TypeVar("T")

#: A preview frame: (``"PNG"`` | ``"JPEG"``, encoded image bytes).
Preview = tuple[str, bytes]


# --------------------------------------------------------------------------- data types


class ImageBatch:
    """An ``IMAGE`` value: a batch of RGB pictures of the same size."""

    def __init__(self, images: Sequence[Image.Image]) -> None:
        if not images:
            raise ValueError("empty image batch")
        self.images: list[Image.Image] = list(images)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the batch."""
        return self.images[0].size

    def __len__(self) -> int:
        return len(self.images)

    def __str__(self) -> str:
        width, height = self.size
        return f"tensor(<IMAGE batch={len(self.images)} height={height} width={width} channels=3>)"


class MaskBatch:
    """A ``MASK`` value: a batch of single-channel (``L``) pictures."""

    def __init__(self, masks: Sequence[Image.Image]) -> None:
        self.masks: list[Image.Image] = list(masks)

    def __str__(self) -> str:
        width, height = self.masks[0].size if self.masks else (0, 0)
        return f"tensor(<MASK batch={len(self.masks)} height={height} width={width}>)"


@dataclass(frozen=True)
class ModelRef:
    """A ``MODEL``: the checkpoint name plus applied LoRAs."""

    ckpt: str
    loras: tuple[tuple[str, float], ...] = ()

    def __str__(self) -> str:
        return f"<comfy.model_patcher.ModelPatcher {self.ckpt} loras={list(self.loras)}>"


@dataclass(frozen=True)
class ClipRef:
    """A ``CLIP`` text encoder reference."""

    ckpt: str
    loras: tuple[tuple[str, float], ...] = ()

    def __str__(self) -> str:
        return f"<comfy.sd.CLIP {self.ckpt} loras={list(self.loras)}>"


@dataclass(frozen=True)
class VaeRef:
    """A ``VAE`` reference."""

    ckpt: str

    def __str__(self) -> str:
        return f"<comfy.sd.VAE {self.ckpt}>"


@dataclass(frozen=True)
class Conditioning:
    """A ``CONDITIONING``: the encoded text and the encoder that made it."""

    text: str
    clip: ClipRef

    def __str__(self) -> str:
        return f"[[tensor(<CONDITIONING {self.text[:40]!r}>), {{'pooled_output': tensor(...)}}]]"


@dataclass(frozen=True)
class Latent:
    """A ``LATENT``: pixel size, batch size and a key describing its content."""

    width: int
    height: int
    batch_size: int
    key: str = "empty"

    def __str__(self) -> str:
        return (
            f"{{'samples': tensor(<LATENT batch={self.batch_size} "
            f"{self.height // 8}x{self.width // 8}>)}}"
        )


# --------------------------------------------------------------------------- node plumbing


class NodeContext(Protocol):
    """What a running node can see and do (implemented by the engine)."""

    node_id: str
    prompt_id: str
    input_dir: Path
    output_dir: Path
    temp_dir: Path
    preview_method: str
    tick_seconds: float

    async def progress(self, value: int, total: int, preview: Preview | None = None) -> None:
        """Report progress (sleeps ``tick_seconds`` first; checks for interrupts)."""
        ...

    async def blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """Run CPU-bound work off the event loop."""
        ...


@dataclass(frozen=True)
class Dirs:
    """The three folders of an instance (``--root``/input, output, temp)."""

    input_dir: Path
    output_dir: Path
    temp_dir: Path


@dataclass
class NodeResult:
    """Outputs (one per RETURN_TYPES slot) and the UI dict (``None`` = no UI output)."""

    outputs: tuple[Any, ...]
    ui: dict[str, Any] | None = None


NodeFn = Callable[[NodeContext, dict[str, Any]], Awaitable[NodeResult]]


@dataclass(frozen=True)
class NodeImpl:
    """An executable node class.

    ``sampler`` nodes receive the prompt's render time as ``steps`` progress ticks.
    ``is_changed`` feeds the cache key (like ComfyUI's ``IS_CHANGED``).
    """

    fn: NodeFn
    sampler: bool = False
    not_idempotent: bool = False
    is_changed: Callable[[Dirs, dict[str, Any]], Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- helpers


def color_from_int(color: int) -> tuple[int, int, int]:
    """ComfyUI's EmptyImage colour: 0xRRGGBB."""
    return ((color >> 16) & 0xFF, (color >> 8) & 0xFF, color & 0xFF)


def encode_png(image: Image.Image, compress_level: int = 1) -> bytes:
    """PNG-encode an image (used for preview frames)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def encode_jpeg(image: Image.Image, quality: int = 95) -> bytes:
    """JPEG-encode an image (used for sampler previews)."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


_RESAMPLE: dict[str, Image.Resampling] = {
    "nearest-exact": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "area": Image.Resampling.BOX,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "bislerp": Image.Resampling.BICUBIC,
}


def common_upscale(
    image: Image.Image, width: int, height: int, method: str, crop: str
) -> Image.Image:
    """Port of ``comfy.utils.common_upscale`` (optional centre crop, then resize)."""
    if crop == "center":
        old_w, old_h = image.size
        old_aspect = old_w / old_h
        new_aspect = width / height
        x = y = 0
        if old_aspect > new_aspect:
            x = round((old_w - old_w * (new_aspect / old_aspect)) / 2)
        elif old_aspect < new_aspect:
            y = round((old_h - old_h * (old_aspect / new_aspect)) / 2)
        image = image.crop((x, y, old_w - x, old_h - y))
    return image.resize((width, height), _RESAMPLE.get(method, Image.Resampling.BILINEAR))


def compute_vars(text: str, width: int, height: int) -> str:
    """``%width%``, ``%height%``, ``%year%``... substitution of SaveImage prefixes."""
    text = text.replace("%width%", str(width)).replace("%height%", str(height))
    now = time.localtime()
    text = text.replace("%year%", str(now.tm_year))
    text = text.replace("%month%", str(now.tm_mon).zfill(2))
    text = text.replace("%day%", str(now.tm_mday).zfill(2))
    text = text.replace("%hour%", str(now.tm_hour).zfill(2))
    text = text.replace("%minute%", str(now.tm_min).zfill(2))
    return text.replace("%second%", str(now.tm_sec).zfill(2))


def get_save_image_path(
    filename_prefix: str, output_dir: Path, image_width: int = 0, image_height: int = 0
) -> tuple[Path, str, int, str]:
    """Port of ``folder_paths.get_save_image_path``.

    Returns (full_output_folder, filename, counter, subfolder). The counter
    continues from the highest ``<filename>_NNNNN_`` file already in the folder.
    Raises ``Exception`` when the prefix escapes ``output_dir``.
    """
    out_dir = os.path.normpath(Path(output_dir).absolute())
    if "%" in filename_prefix:
        filename_prefix = compute_vars(filename_prefix, image_width, image_height)
    normalized = Path(os.path.normpath(filename_prefix))
    subfolder = str(normalized.parent) if str(normalized.parent) != "." else ""
    filename = normalized.name
    full_output_folder = Path(os.path.normpath(Path(out_dir) / subfolder))
    common = os.path.commonpath((out_dir, full_output_folder))
    if common != out_dir:
        err = (
            "**** ERROR: Saving image outside the output folder is not allowed."
            + "\n full_output_folder: "
            + str(full_output_folder)
            + "\n         output_dir: "
            + out_dir
            + "\n         commonpath: "
            + common
        )
        log.error(err)
        raise Exception(err)

    def map_filename(name: str) -> tuple[int, str]:
        prefix = name[: len(filename) + 1]
        try:
            digits = int(name[len(filename) + 1 :].split("_")[0])
        except ValueError:
            digits = 0
        return digits, prefix

    try:
        existing = [
            digits
            for digits, prefix in map(map_filename, (p.name for p in full_output_folder.iterdir()))
            if os.path.normcase(prefix[:-1]) == os.path.normcase(filename) and prefix[-1:] == "_"
        ]
        counter = max(existing) + 1 if existing else 1
    except FileNotFoundError:
        full_output_folder.mkdir(parents=True, exist_ok=True)
        counter = 1
    return full_output_folder, filename, counter, subfolder


def save_images(
    images: ImageBatch,
    filename_prefix: str,
    output_dir: Path,
    folder_type: str,
    compress_level: int,
    prompt: Any,
    extra_pnginfo: Any,
) -> list[dict[str, str]]:
    """SaveImage's file writing: PNG text chunks ``prompt`` + each ``extra_pnginfo`` key."""
    width, height = images.size
    full_folder, filename, counter, subfolder = get_save_image_path(
        filename_prefix, output_dir, width, height
    )
    results: list[dict[str, str]] = []
    for batch_number, image in enumerate(images.images):
        metadata = PngInfo()
        if prompt is not None:
            metadata.add_text("prompt", json.dumps(prompt))
        if isinstance(extra_pnginfo, dict):
            for key in extra_pnginfo:
                metadata.add_text(key, json.dumps(extra_pnginfo[key]))
        name = filename.replace("%batch_num%", str(batch_number))
        file = f"{name}_{counter:05}_.png"
        image.save(full_folder / file, pnginfo=metadata, compress_level=compress_level)
        results.append({"filename": file, "subfolder": subfolder, "type": folder_type})
        counter += 1
    return results


def _digest(*parts: Any) -> bytes:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).digest()


def synthetic_image(key: str, index: int, width: int, height: int) -> Image.Image:
    """A deterministic picture for a sampled latent: gradient + disc, colours from ``key``."""
    d = _digest(key, index)
    c1 = (d[0], d[1], d[2])
    c2 = (d[3], d[4], d[5])
    c3 = (d[6], d[7], d[8])
    mask = Image.linear_gradient("L")
    if d[9] & 1:
        mask = mask.transpose(Image.Transpose.ROTATE_90)
    mask = mask.resize((width, height), Image.Resampling.BILINEAR)
    image = Image.composite(
        Image.new("RGB", (width, height), c1), Image.new("RGB", (width, height), c2), mask
    )
    draw = ImageDraw.Draw(image)
    radius = max(2, min(width, height) * (20 + d[10] % 20) // 100)
    cx = width * (20 + d[11] % 60) // 100
    cy = height * (20 + d[12] % 60) // 100
    draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=c3)
    return image


def file_sha256(path: Path) -> str:
    """Hex digest of a file (LoadImage's IS_CHANGED)."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        h.update(fh.read())
    return h.hexdigest()


def resolve_input_path(name: str, input_dir: Path, output_dir: Path, temp_dir: Path) -> Path:
    """``folder_paths.get_annotated_filepath``."""
    if name.endswith("[output]"):
        return output_dir / name[:-9]
    if name.endswith("[input]"):
        return input_dir / name[:-8]
    if name.endswith("[temp]"):
        return temp_dir / name[:-7]
    return input_dir / name


# --------------------------------------------------------------------------- image nodes


async def empty_image(ctx: NodeContext, inp: dict[str, Any]) -> NodeResult:
    """EmptyImage(width, height, batch_size, color)."""
    size = (int(inp["width"]), int(inp["height"]))
    color = color_from_int(int(inp["color"]))

    def make() -> ImageBatch:
        first = Image.new("RGB", size, color)
        return ImageBatch([first] + [first.copy() for _ in range(int(inp["batch_size"]) - 1)])

    return NodeResult((await ctx.blocking(make),))


async def image_blur(ctx: NodeContext, inp: dict[str, Any]) -> NodeResult:
    """ImageBlur(image, blur_radius, sigma): gaussian blur (Pillow approximation)."""
    images: ImageBatch = inp["image"]
    radius = int(inp["blur_radius"])
    sigma = float(inp["sigma"])
    if radius == 0:
        return NodeResult((images,))

    def blur() -> ImageBatch:
        flt = ImageFilter.GaussianBlur(radius=sigma)
        return ImageBatch([img.filter(flt) for img in images.images])

    return NodeResult((await ctx.blocking(blur),))


async def image_scale(ctx: NodeContext, inp: dict[str, Any]) -> NodeResult:
    """ImageScale(image, upscale_method, width, height, crop)."""
    images: ImageBatch = inp["image"]
    width, height = int(inp["width"]), int(inp["height"])
    if width == 0 and height == 0:
        return NodeResult((images,))
    old_w, old_h = images.size
    if width == 0:
        width = max(1, round(old_w * height / old_h))
    elif height == 0:
        height = max(1, round(old_h * width / old_w))

    def scale() -> ImageBatch:
        return ImageBatch(
            [
                common_upscale(img, width, height, str(inp["upscale_method"]), str(inp["crop"]))
                for img in images.images
            ]
        )

    return NodeResult((await ctx.blocking(scale),))


async def image_scale_by(ctx: NodeContext, inp: dict[str, Any]) -> NodeResult:
    """ImageScaleBy(image, upscale_method, scale_by)."""
    images: ImageBatch = inp["image"]
    old_w, old_h = images.size
    width = round(old_w * float(inp["scale_by"]))
    height = round(old_h * float(inp["scale_by"]))

    def scale() -> ImageBatch:
        return ImageBatch(
            [
                common_upscale(img, width, height, str(inp["upscale_method"]), "disabled")
                for img in images.images
            ]
        )

    return NodeResult((await ctx.blocking(scale),))


async def image_invert(ctx: NodeContext, inp: dict[str, Any]) -> NodeResult:
    """ImageInvert(image)."""
    images: ImageBatch = inp["image"]

    def invert() -> ImageBatch:
        return ImageBatch([ImageOps.invert(img.convert("RGB")) for img in images.images])

    return NodeResult((await ctx.blocking(invert),))


def _load_image_file(path: Path) -> tuple[ImageBatch, MaskBatch]:
    img = Image.open(path)
    output_images: list[Image.Image] = []
    output_masks: list[Image.Image] = []
    size: tuple[int, int] | None = None
    for frame in ImageSequence.Iterator(img):
        frame = ImageOps.exif_transpose(frame) or frame
        if frame.mode == "I":
            frame = frame.point(lambda v: v * (1 / 255))
        rgb = frame.convert("RGB")
        if size is None:
            size = rgb.size
        if rgb.size != size:
            continue
        if "A" in frame.getbands():
            mask = ImageOps.invert(frame.getchannel("A"))
        elif frame.mode == "P" and "transparency" in frame.info:
            mask = ImageOps.invert(frame.convert("RGBA").getchannel("A"))
        else:
            mask = Image.new("L", (64, 64), 0)
        output_images.append(rgb)
        output_masks.append(mask)
    if len(output_images) > 1 and img.format in ("MPO",):
        output_images, output_masks = output_images[:1], output_masks[:1]
    return ImageBatch(output_images), MaskBatch(output_masks)


async def load_image(ctx: NodeContext, inp: dict[str, Any]) -> NodeResult:
    """LoadImage(image) -> (IMAGE, MASK); a non-image file raises PIL.UnidentifiedImageError."""
    path = resolve_input_path(str(inp["image"]), ctx.input_dir, ctx.output_dir, ctx.temp_dir)
    images, masks = await ctx.blocking(_load_image_file, path)
    return NodeResult((images, masks))


def _load_image_is_changed(dirs: Dirs, inp: dict[str, Any]) -> Any:
    path = resolve_input_path(
        str(inp.get("image", "")), dirs.input_dir, dirs.output_dir, dirs.temp_dir
    )
    try:
        return file_sha256(path)
    except OSError:
        return f"nan-{random.random()}"


async def save_image(ctx: NodeContext, inp: dict[str, Any]) -> NodeResult:
    """SaveImage(images, filename_prefix) -> output/<prefix>_NNNNN_.png."""
    images: ImageBatch = inp["images"]
    prefix = str(inp.get("filename_prefix", "ComfyUI"))
    results = await ctx.blocking(
        save_images,
        images,
        prefix,
        ctx.output_dir,
        "output",
        4,
        inp.get("prompt"),
        inp.get("extra_pnginfo"),
    )
    return NodeResult((), {"images": results})


async def preview_image(ctx: NodeContext, inp: dict[str, Any]) -> NodeResult:
    """PreviewImage(images) -> temp/ComfyUI_temp_xxxxx_NNNNN_.png (type temp)."""
    images: ImageBatch = inp["images"]
    suffix = "".join(random.choice("abcdefghijklmnopqrstupvxyz") for _ in range(5))
    prefix = "ComfyUI" + "_temp_" + suffix
    results = await ctx.blocking(
        save_images,
        images,
        prefix,
        ctx.temp_dir,
        "temp",
        1,
        inp.get("prompt"),
        inp.get("extra_pnginfo"),
    )
    return NodeResult((), {"images": results})


async def save_image_websocket(ctx: NodeContext, inp: dict[str, Any]) -> NodeResult:
    """SaveImageWebsocket(images): each image goes out as a binary preview frame."""
    images: ImageBatch = inp["images"]
    total = len(images)
    for step, image in enumerate(images.images):
        data = await ctx.blocking(encode_png, image, 1)
        await ctx.progress(step, total, ("PNG", data))
    return NodeResult(())


# --------------------------------------------------------------------------- model nodes


async def checkpoint_loader_simple(ctx: NodeContext, inp: dict[str, Any]) -> NodeResult:
    """CheckpointLoaderSimple(ckpt_name) -> (MODEL, CLIP, VAE)."""
    name = str(inp["ckpt_name"])
    return NodeResult((ModelRef(name), ClipRef(name), VaeRef(name)))


async def lora_loader(ctx: NodeContext, inp: dict[str, Any]) -> NodeResult:
    """LoraLoader(model, clip, lora_name, strength_model, strength_clip)."""
    model: ModelRef = inp["model"]
    clip: ClipRef = inp["clip"]
    name = str(inp["lora_name"])
    return NodeResult(
        (
            ModelRef(model.ckpt, (*model.loras, (name, float(inp["strength_model"])))),
            ClipRef(clip.ckpt, (*clip.loras, (name, float(inp["strength_clip"])))),
        )
    )


async def lora_loader_model_only(ctx: NodeContext, inp: dict[str, Any]) -> NodeResult:
    """LoraLoaderModelOnly(model, lora_name, strength_model)."""
    model: ModelRef = inp["model"]
    name = str(inp["lora_name"])
    return NodeResult((ModelRef(model.ckpt, (*model.loras, (name, float(inp["strength_model"])))),))


async def clip_text_encode(ctx: NodeContext, inp: dict[str, Any]) -> NodeResult:
    """CLIPTextEncode(text, clip) -> CONDITIONING."""
    return NodeResult((Conditioning(str(inp["text"]), inp["clip"]),))


async def empty_latent_image(ctx: NodeContext, inp: dict[str, Any]) -> NodeResult:
    """EmptyLatentImage(width, height, batch_size) -> LATENT."""
    return NodeResult((Latent(int(inp["width"]), int(inp["height"]), int(inp["batch_size"])),))


def _preview_for(key: str, step: int, steps: int, latent: Latent) -> Preview:
    width = max(8, min(512, latent.width // 8))
    height = max(8, min(512, latent.height // 8))
    final = synthetic_image(key, 0, width, height)
    noise = Image.effect_noise((width, height), 64).convert("RGB")
    mixed = Image.blend(noise, final, step / max(1, steps))
    return ("JPEG", encode_jpeg(mixed))


async def ksampler(ctx: NodeContext, inp: dict[str, Any]) -> NodeResult:
    """KSampler: ``steps`` progress ticks, then a latent keyed by every setting."""
    model: ModelRef = inp["model"]
    positive: Conditioning = inp["positive"]
    negative: Conditioning = inp["negative"]
    latent: Latent = inp["latent_image"]
    steps = int(inp["steps"])
    key = _digest(
        "ksampler",
        model.ckpt,
        list(model.loras),
        int(inp["seed"]),
        steps,
        float(inp["cfg"]),
        str(inp["sampler_name"]),
        str(inp["scheduler"]),
        float(inp["denoise"]),
        positive.text,
        list(positive.clip.loras),
        negative.text,
        latent.key,
    ).hex()
    for step in range(steps):
        preview = None
        if ctx.preview_method != "none":
            preview = _preview_for(key, step + 1, steps, latent)
        await ctx.progress(step + 1, steps, preview)
    return NodeResult((Latent(latent.width, latent.height, latent.batch_size, key),))


async def vae_decode(ctx: NodeContext, inp: dict[str, Any]) -> NodeResult:
    """VAEDecode(samples, vae) -> IMAGE: the synthetic picture of the latent."""
    latent: Latent = inp["samples"]
    vae: VaeRef = inp["vae"]
    width = max(8, latent.width // 8 * 8)
    height = max(8, latent.height // 8 * 8)

    def decode() -> ImageBatch:
        return ImageBatch(
            [
                synthetic_image(f"{latent.key}:{vae.ckpt}", i, width, height)
                for i in range(latent.batch_size)
            ]
        )

    return NodeResult((await ctx.blocking(decode),))


#: Executable classes.
NODE_IMPLS: dict[str, NodeImpl] = {
    "EmptyImage": NodeImpl(empty_image),
    "ImageBlur": NodeImpl(image_blur),
    "ImageScale": NodeImpl(image_scale),
    "ImageScaleBy": NodeImpl(image_scale_by),
    "ImageInvert": NodeImpl(image_invert),
    "LoadImage": NodeImpl(load_image, is_changed=_load_image_is_changed),
    "SaveImage": NodeImpl(save_image),
    "PreviewImage": NodeImpl(preview_image),
    "SaveImageWebsocket": NodeImpl(save_image_websocket, is_changed=lambda _dir, _inp: time.time()),
    "CheckpointLoaderSimple": NodeImpl(checkpoint_loader_simple),
    "LoraLoader": NodeImpl(lora_loader),
    "LoraLoaderModelOnly": NodeImpl(lora_loader_model_only),
    "CLIPTextEncode": NodeImpl(clip_text_encode),
    "EmptyLatentImage": NodeImpl(empty_latent_image),
    "KSampler": NodeImpl(ksampler, sampler=True),
    "VAEDecode": NodeImpl(vae_decode),
}


def format_value(value: Any) -> Any:
    """``execution.format_value``: scalars and plain dicts as-is, anything else as str."""
    if value is None:
        return None
    if isinstance(value, int | float | bool | str):
        return value
    if isinstance(value, dict) and not any(
        isinstance(v, ImageBatch | MaskBatch | Latent) for v in value.values()
    ):
        return value
    return str(value)
