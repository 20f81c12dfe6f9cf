"""The studio's characters: Kai Nakamura (three versions) and Sakura and Hiroshi with
reference images. Idempotent: running it twice changes nothing.

Reference images are small PNGs drawn here (no downloads), stored content-addressed.
"""

from __future__ import annotations

import io
from typing import Any

from PIL import Image, ImageDraw
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.ingest.references import ReferenceStore
from shared.db.models import (
    CharacterAttribute,
    CharacterDefinition,
    CharacterReference,
    CharacterVersion,
    Project,
)

DEMO_PROJECT = "neon-skies"

KAI_VERSIONS: list[dict[str, Any]] = [
    {
        "appearance": "teenage boy, messy black hair, brown eyes, slim build",
        "outfit": "black school uniform, white shirt",
        "personality": "quiet, observant, stubborn",
        "prompt_fragments": ["1boy", "solo"],
        "trigger_words": ["kainakamura"],
        "negative_fragments": ["extra fingers", "blurry face"],
        "lora": None,
        "default_seed": 1207,
    },
    {
        "appearance": "teenage boy, messy black hair with a silver streak, brown eyes, slim build",
        "outfit": "black school uniform, open collar, red scarf",
        "personality": "quiet, observant, stubborn; warmer around Sakura",
        "prompt_fragments": ["1boy", "solo", "determined expression"],
        "trigger_words": ["kainakamura"],
        "negative_fragments": ["extra fingers", "blurry face", "deformed hands"],
        "lora": {"name": "kai_nakamura_v2.safetensors", "strength": 0.8},
        "default_seed": 1207,
    },
    {
        "appearance": "young man, messy black hair with a silver streak, brown eyes, athletic build, "
        "small scar over left eyebrow",
        "outfit": "dark grey hooded jacket over black shirt, red scarf, fingerless gloves",
        "personality": "quiet, decisive, protective of his friends",
        "prompt_fragments": ["1boy", "solo", "determined expression", "wind-swept hair"],
        "trigger_words": ["kainakamura", "kai_v3"],
        "negative_fragments": ["extra fingers", "blurry face", "deformed hands", "childlike"],
        "lora": {"name": "kai_nakamura_v3.safetensors", "strength": 0.75},
        "default_seed": 31207,
    },
]

SAKURA = {
    "appearance": "teenage girl, long pink hair, green eyes, hair clip shaped like a cherry blossom",
    "outfit": "sailor school uniform, navy skirt, pink ribbon",
    "personality": "cheerful, brave, impulsive",
    "prompt_fragments": ["1girl", "smiling"],
    "trigger_words": ["sakurahana"],
    "negative_fragments": ["extra fingers"],
    "lora": {"name": "sakura_hana_v1.safetensors", "strength": 0.7},
    "default_seed": 4242,
}

HIROSHI = {
    "appearance": "middle-aged man, short grey hair, glasses, stubble",
    "outfit": "rumpled brown suit, loosened tie",
    "personality": "tired detective, dry humour",
    "prompt_fragments": ["1man", "mature male"],
    "trigger_words": ["hiroshitanaka"],
    "negative_fragments": ["young", "extra fingers"],
    "lora": None,
    "default_seed": 777,
}


def reference_png(
    colour: tuple[int, int, int], label: str, size: tuple[int, int] = (96, 128)
) -> bytes:
    """A small, deterministic portrait-shaped PNG standing in for a reference image."""
    image = Image.new("RGB", size, colour)
    draw = ImageDraw.Draw(image)
    w, h = size
    draw.ellipse((w * 0.25, h * 0.1, w * 0.75, h * 0.45), fill=(250, 224, 196))
    draw.rectangle((w * 0.2, h * 0.5, w * 0.8, h * 0.95), fill=tuple(c // 2 for c in colour))
    draw.text((4, 4), label, fill=(255, 255, 255))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


async def _character(
    session: AsyncSession, name: str, versions: list[dict[str, Any]], attributes: dict[str, str]
) -> CharacterDefinition:
    character = (
        await session.scalars(
            select(CharacterDefinition).where(
                CharacterDefinition.project_id.is_(None),
                func.lower(CharacterDefinition.name) == name.lower(),
            )
        )
    ).first()
    if character is None:
        character = CharacterDefinition(name=name, project_id=None, current_version=len(versions))
        session.add(character)
        await session.flush()
        for number, definition in enumerate(versions, start=1):
            session.add(
                CharacterVersion(
                    character_id=character.id, version=number, definition=definition, note="seed"
                )
            )
        for key, value in attributes.items():
            session.add(CharacterAttribute(character_id=character.id, key=key, value=value))
        await session.flush()
    return character


async def _reference(
    session: AsyncSession,
    store: ReferenceStore,
    character: CharacterDefinition,
    data: bytes,
    kind: str,
    weight: float,
) -> None:
    sha, path = store.put(data)
    exists = await session.scalar(
        select(CharacterReference.id).where(
            CharacterReference.character_id == character.id, CharacterReference.sha256 == sha
        )
    )
    if exists is None:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
        session.add(
            CharacterReference(
                character_id=character.id,
                sha256=sha,
                path=str(path),
                kind=kind,
                weight=weight,
                mime="image/png",
                width=width,
                height=height,
                bytes=len(data),
            )
        )


async def seed(session: AsyncSession, store: ReferenceStore) -> dict[str, Any]:
    """Load the demo project and the studio's characters. Call inside a transaction."""
    project = (await session.scalars(select(Project).where(Project.slug == DEMO_PROJECT))).first()
    if project is None:
        project = Project(slug=DEMO_PROJECT, name="Neon Skies", description="Demo series")
        session.add(project)
    kai = await _character(
        session,
        "Kai Nakamura",
        KAI_VERSIONS,
        {"age": "17", "height_cm": "174", "hair": "black", "eyes": "brown", "role": "protagonist"},
    )
    sakura = await _character(
        session, "Sakura Hana", [SAKURA], {"age": "16", "hair": "pink", "role": "deuteragonist"}
    )
    hiroshi = await _character(
        session, "Hiroshi Tanaka", [HIROSHI], {"age": "48", "hair": "grey", "role": "mentor"}
    )
    await _reference(
        session, store, sakura, reference_png((230, 120, 170), "Sakura face"), "face", 1.0
    )
    await _reference(
        session,
        store,
        sakura,
        reference_png((200, 90, 140), "Sakura body", (96, 192)),
        "full-body",
        0.6,
    )
    await _reference(
        session, store, hiroshi, reference_png((120, 100, 80), "Hiroshi face"), "face", 1.0
    )
    await session.flush()
    return {
        "project": DEMO_PROJECT,
        "characters": {c.name: c.current_version for c in (kai, sakura, hiroshi)},
    }
