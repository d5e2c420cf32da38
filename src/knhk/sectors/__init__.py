"""The bundled sector packs (finance, healthcare, manufacturing, logistics): each an initial Σ_sector with its
SHACL shapes, guards and guard profile, and its doctrines. Format: docs/sector-packs.md."""

from knhk.sectors.pack import SectorPack, available_sectors, load_pack

__all__ = ["SectorPack", "available_sectors", "load_pack"]
