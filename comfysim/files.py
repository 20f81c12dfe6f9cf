"""File routes: ``GET /view`` and ``POST /upload/image`` (ports of ComfyUI's handlers).

They run in a worker thread (``asyncio.to_thread``) because they touch the disk.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
from io import BytesIO
from pathlib import Path

from aiohttp import web
from PIL import Image

from comfysim.nodes import Dirs

__all__ = ["dir_by_type", "store_upload", "view_file"]


def dir_by_type(dirs: Dirs, folder_type: str | None) -> str | None:
    """Absolute folder for ``output``/``input``/``temp`` (None for anything else)."""
    mapping = {"output": dirs.output_dir, "input": dirs.input_dir, "temp": dirs.temp_dir}
    path = mapping.get(folder_type or "")
    return os.path.normpath(path.absolute()) if path is not None else None


def view_file(dirs: Dirs, query: dict[str, str]) -> web.StreamResponse:
    """``GET /view`` (port of ComfyUI's ``view_image``), run in a worker thread."""
    if "filename" not in query:
        return web.Response(status=404)
    filename = query["filename"]
    output_dir: str | None = None
    for suffix, folder_type in (("[output]", "output"), ("[input]", "input"), ("[temp]", "temp")):
        if filename.endswith(suffix):
            filename = filename[: -(len(suffix) + 1)]
            output_dir = dir_by_type(dirs, folder_type)
            break
    if not filename:
        return web.Response(status=400)
    if filename[0] == "/" or ".." in filename:
        return web.Response(status=400)
    if output_dir is None:
        output_dir = dir_by_type(dirs, query.get("type", "output"))
    if output_dir is None:
        return web.Response(status=400)
    if "subfolder" in query:
        full_output_dir = os.path.normpath(Path(output_dir) / query["subfolder"])
        if os.path.commonpath((full_output_dir, output_dir)) != output_dir:
            return web.Response(status=403)
        output_dir = full_output_dir
    filename = Path(filename).name
    file = Path(output_dir) / filename
    if not file.is_file():
        return web.Response(status=404)
    disposition = {"Content-Disposition": f'filename="{filename}"'}
    if "preview" in query:
        preview_info = query["preview"].split(";")
        image_format = preview_info[0]
        if image_format not in ("webp", "jpeg") or "a" in query.get("channel", ""):
            image_format = "webp"
        quality = int(preview_info[-1]) if preview_info[-1].isdigit() else 90
        with Image.open(file) as img:
            buffer = BytesIO()
            img.convert("RGB").save(buffer, format=image_format, quality=quality)
        return web.Response(
            body=buffer.getvalue(), content_type=f"image/{image_format}", headers=disposition
        )
    channel = query.get("channel", "rgba")
    if channel == "rgb":
        with Image.open(file) as img:
            if img.mode == "RGBA":
                r, g, b, _ = img.split()
                new_img = Image.merge("RGB", (r, g, b))
            else:
                new_img = img.convert("RGB")
            buffer = BytesIO()
            new_img.save(buffer, format="PNG")
        return web.Response(body=buffer.getvalue(), content_type="image/png", headers=disposition)
    if channel == "a":
        with Image.open(file) as img:
            alpha = img.getchannel("A") if img.mode == "RGBA" else Image.new("L", img.size, 255)
            alpha_img = Image.new("RGBA", img.size)
            alpha_img.putalpha(alpha)
            buffer = BytesIO()
            alpha_img.save(buffer, format="PNG")
        return web.Response(body=buffer.getvalue(), content_type="image/png", headers=disposition)
    content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    if content_type in {
        "text/html",
        "text/html-sandboxed",
        "application/xhtml+xml",
        "text/javascript",
        "text/css",
    }:
        content_type = "application/octet-stream"
    return web.FileResponse(file, headers={**disposition, "Content-Type": content_type})


def store_upload(
    dirs: Dirs, upload_type: str, subfolder: str, filename: str, data: bytes, overwrite: bool
) -> web.StreamResponse:
    """``POST /upload/image`` file handling (name clash gets `` (1)`` unless identical)."""
    upload_dir = dir_by_type(dirs, upload_type)
    if upload_dir is None:
        raise RuntimeError(f"unknown upload type {upload_type!r}")  # 500, as ComfyUI
    full_output_folder = Path(upload_dir) / os.path.normpath(subfolder)
    filepath = Path(os.path.normpath(full_output_folder / filename))
    if os.path.commonpath((upload_dir, filepath)) != upload_dir:
        return web.Response(status=400)
    full_output_folder.mkdir(parents=True, exist_ok=True)
    duplicate = False
    if not overwrite:
        stem, ext = Path(filename).stem, Path(filename).suffix
        i = 1
        while filepath.exists():
            if hashlib.sha256(filepath.read_bytes()).digest() == hashlib.sha256(data).digest():
                duplicate = True
                break
            filename = f"{stem} ({i}){ext}"
            filepath = full_output_folder / filename
            i += 1
    if not duplicate:
        filepath.write_bytes(data)
    return web.json_response({"name": filename, "subfolder": subfolder, "type": upload_type})
