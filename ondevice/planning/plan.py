"""One load, planned: the machine, the hardware profile it gets (or the one named), the flags given on
top of it, and the memory pre-flight for the models to load. Commands and views all plan through here,
so the sequence detect -> profile -> flags -> estimate -> check exists once."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

from ..gguf_split import read_gguf_model
from ..gguf_summary import GGUFSummary
from ..quant_names import made_with_imatrix
from ..refs import ResolvedModel
from ..runtime.protocol import LoadOptions
from ..runtime.rpc_client import RpcError, ServerInfo, check_servers, parse_endpoints
from ..store import StoreEntry
from . import hardware
from .hardware import Hardware
from .hardware_profiles import HardwareProfile, choose_profile, load_hardware_profile, resolve_load_options
from .preflight import (
    InsufficientMemoryError,
    MemoryCheck,
    MemoryEstimate,
    check_memory,
    combined,
    estimate_for_model,
    require_fit,
    worker_memory_limit,
)
from .rpc_split import SplitCheck, check_split, require_split_fit

log = logging.getLogger("ondevice.planning")


@dataclass(frozen=True)
class LoadPlan:
    """What the profile, the loading flags and --force ask for, on one machine."""

    options: LoadOptions  # the profile's settings with the explicit flags applied
    profile: HardwareProfile
    hardware: Hardware
    reason: str  # why this profile: named by the user, or picked for the machine
    force: bool = False

    def check(self, *summaries: GGUFSummary) -> MemoryCheck:
        """The memory pre-flight for models loaded at the same time (their memory adds up)."""
        return self._check(self._estimates(summaries))

    def _estimates(self, summaries: tuple[GGUFSummary, ...]) -> list[MemoryEstimate]:
        return [estimate_for_model(s, self.options, self.hardware) for s in summaries]

    def _check(self, estimates: list[MemoryEstimate]) -> MemoryCheck:
        total = estimates[0] if len(estimates) == 1 else combined(estimates)
        return check_memory(total, self.hardware, self.profile.headroom_bytes)

    def best_fit(self, entries: list[StoreEntry]) -> StoreEntry:
        """Of one model's files, the one with the most bits per weight that fits in memory now (the
        smallest when none does: its pre-flight then says by how much), as Ollama's default tag. Of
        two files of one size (LEVEL and LEVEL-imat), the one made with an importance matrix."""
        ranked = sorted(
            entries,
            key=lambda e: (e.manifest.bits_per_weight, made_with_imatrix(e.manifest.quant)),
            reverse=True,
        )
        for entry in ranked:
            if self.check(read_gguf_model(entry.path)).fits:
                return entry
        return ranked[-1]

    def options_for(self, *models: ResolvedModel) -> LoadOptions:
        """The options to load `models` with (at the same time), after the pre-flight: refused unless
        they fit or --force; each worker gets a memory limit from its estimate, none with --force."""
        if self.options.rpc_servers:
            return self._options_over_rpc(models)
        estimates = self._estimates(tuple(m.summary for m in models))
        result = self._check(estimates)
        names = " + ".join(m.display_name for m in models)
        if not result.fits and self.force:
            together = " together" if len(models) > 1 else ""
            log.warning("--force: loading %s although%s they %s", names, together, result.summary())
        require_fit(result, names, self.force)
        if self.force:
            return self.options
        largest = max(estimates, key=lambda e: e.total_bytes)
        return replace(self.options, memory_limit_bytes=worker_memory_limit(largest))

    def check_servers(self) -> list[ServerInfo]:
        """Ask each RPC server for its protocol version and memory (RpcError: one line, no load)."""
        return check_servers(parse_endpoints(self.options.rpc_servers))

    def split(self, summary: GGUFSummary, servers: list[ServerInfo]) -> SplitCheck:
        """The pre-flight across this machine and the servers: layers and bytes per device."""
        return check_split(summary, self.options, self.hardware, self.profile.headroom_bytes, servers)

    def _options_over_rpc(self, models: tuple[ResolvedModel, ...]) -> LoadOptions:
        """Check the servers, then the split: refused unless each device has room, or --force. The
        worker gets no memory limit: the weights it sends away pass through its memory while loading."""
        if len(models) > 1:
            raise RpcError(
                "an RPC server serves one client at a time, so --rpc takes one model at a time, not "
                + " + ".join(m.display_name for m in models)
            )
        (model,) = models
        split = self.split(model.summary, self.check_servers())
        for line in split.plan_lines():
            log.warning("%s: %s", model.display_name, line)
        if not split.fits and self.force:
            log.warning("--force: loading %s although %s", model.display_name, split.summary())
        require_split_fit(split, model.display_name, self.force)
        return self.options


def plan_load(
    explicit: dict[str, Any] | None = None,
    profile_name: str | None = None,
    force: bool = False,
    hw: Hardware | None = None,
) -> LoadPlan:
    """Plan loads on this machine (or `hw`): the named profile or the one picked for it, with the
    explicitly given options (LoadOptions' names; None means not given) on top."""
    machine = hw or hardware.detect_hardware()
    if profile_name:
        reason = "named with --profile"
    else:
        selection = choose_profile(machine)
        profile_name, reason = selection.profile, selection.reason
    profile = load_hardware_profile(profile_name)
    return LoadPlan(resolve_load_options(profile, explicit or {}), profile, machine, reason, force)


def require_fit_now(
    what: str, summary: GGUFSummary, options: LoadOptions, advice: str, hw: Hardware | None = None
) -> None:
    """Refuse, with the numbers, one more model that will not fit next to the models already loaded
    (the terminal UI's check: there is no --force, and `advice` says what to do instead)."""
    if options.rpc_servers:
        raise RpcError(f"{what} cannot join: the RPC servers in --rpc serve one model at a time")
    check = replace(plan_load(hw=hw), options=options).check(summary)
    if not check.fits:
        raise InsufficientMemoryError(
            f"{what} at {check.estimate.n_ctx} tokens of context will not fit next to the loaded models: "
            f"{check.summary()} ({check.estimate.breakdown()}); {advice}"
        )
