"""Stop sequences over streamed text."""

from __future__ import annotations


class StopScanner:
    """Cuts the output at the first stop sequence, holding back text that may begin one."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops = tuple(s for s in stops if s)
        self.full = ""
        self.emitted = 0
        self.cut: int | None = None

    @property
    def text(self) -> str:
        return self.full[: self.cut] if self.cut is not None else self.full

    def feed(self, new: str) -> tuple[str, bool]:
        """Add decoded text; return what is safe to show now and whether a stop sequence appeared."""
        if not self.stops:
            self.full += new
            self.emitted = len(self.full)
            return new, False
        search_from = max(0, len(self.full) - max(len(s) for s in self.stops))
        self.full += new
        hits = [i for i in (self.full.find(s, search_from) for s in self.stops) if i >= 0]
        if hits:
            self.cut = min(hits)
            out = self.full[self.emitted : self.cut]
            self.emitted = self.cut
            return out, True
        hold = self._held_back()
        out = self.full[self.emitted : len(self.full) - hold]
        self.emitted += len(out)
        return out, False

    def _held_back(self) -> int:
        for size in range(min(len(self.full), max(len(s) for s in self.stops) - 1), 0, -1):
            suffix = self.full[-size:]
            if any(s.startswith(suffix) for s in self.stops):
                return size
        return 0

    def finish(self, final: str) -> str:
        """Flush what is left once generation ends without a stop sequence."""
        if self.cut is not None:
            return ""
        out, hit = self.feed(final)
        if hit:
            return out
        out += self.full[self.emitted :]
        self.emitted = len(self.full)
        return out
