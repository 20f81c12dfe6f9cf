"""Renderer: drives ComfyUI backends; retries what can succeed, parks what cannot."""

SERVICE = "renderer"
