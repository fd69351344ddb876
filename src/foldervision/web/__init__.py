"""`foldervision serve`: a small web page and JSON API over a warm RetrievalService."""

from __future__ import annotations
