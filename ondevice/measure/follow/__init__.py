"""Instruction following: prompts with verifiable instructions, their checkers, and the scoring."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from threading import Event
from typing import Any

from ...progress import Progress, ProgressFn
from ...prompting import PromptMode
from ...refs import ResolvedModel
from ...runtime.engine import open_model, single_turn
from ...runtime.protocol import GenerationParams, LoadOptions
from .. import MeasureError
from ..results import FollowResult, ModelRecord, PromptOutcome, TypeScore
from .checkers import CHECKERS, check
from .prompts import PROMPTS


@dataclass(frozen=True)
class Instruction:
    kind: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FollowPrompt:
    id: str
    text: str
    instructions: tuple[Instruction, ...]


def builtin_prompts() -> list[FollowPrompt]:
    return [
        FollowPrompt(pid, text, tuple(Instruction(kind, dict(args)) for kind, args in instructions))
        for pid, text, instructions in PROMPTS
    ]


def load_prompts(path: Path | None = None, limit: int | None = None) -> list[FollowPrompt]:
    """The built-in set, or a JSON list or JSON-lines file of
    {"id": ..., "prompt": ..., "instructions": [{"type": ..., ARGUMENTS}]}."""
    prompts = builtin_prompts() if path is None else _read_prompts(Path(path))
    if limit is not None:
        prompts = prompts[:limit]
    if not prompts:
        raise MeasureError("the instruction-following prompt set is empty")
    return prompts


def _read_prompts(path: Path) -> list[FollowPrompt]:
    try:
        text = path.read_text(encoding="utf-8")
        stripped = text.strip()
        items = (
            json.loads(stripped)
            if stripped.startswith("[")
            else [json.loads(line) for line in stripped.splitlines() if line.strip()]
        )
    except OSError as exc:
        raise MeasureError(f"cannot read the prompt set {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise MeasureError(f"{path} is not JSON or JSON lines: {exc}") from None
    prompts = []
    for n, item in enumerate(items, 1):
        try:
            instructions = []
            for spec in item["instructions"]:
                args = {k: v for k, v in spec.items() if k != "type"}
                if spec["type"] not in CHECKERS:
                    known = ", ".join(sorted(CHECKERS))
                    raise MeasureError(
                        f"{path}: prompt {n} has unknown instruction {spec['type']!r}; known: {known}"
                    )
                instructions.append(Instruction(spec["type"], args))
            prompts.append(FollowPrompt(str(item.get("id", n)), str(item["prompt"]), tuple(instructions)))
        except (KeyError, TypeError) as exc:
            raise MeasureError(
                f"{path}: prompt {n} needs 'prompt' and 'instructions' with a 'type' each ({exc})"
            ) from None
    return prompts


def score_answer(prompt: FollowPrompt, answer: str) -> tuple[list[bool], list[bool]]:
    """Strict and loose verdicts, one per instruction of the prompt."""
    verdicts = [check(i.kind, answer, i.args) for i in prompt.instructions]
    return [s for s, _ in verdicts], [lo for _, lo in verdicts]


def summarize(
    model: ModelRecord, mode: PromptMode, prompts: Sequence[FollowPrompt], answers: Sequence[str]
) -> FollowResult:
    """IFEval's four accuracies and per-type counts."""
    outcomes, by_type = [], {}
    n_instr = strict_instr = loose_instr = 0
    for prompt, answer in zip(prompts, answers, strict=True):
        strict, loose = score_answer(prompt, answer)
        for instruction, s, lo in zip(prompt.instructions, strict, loose, strict=True):
            t = by_type.get(instruction.kind, TypeScore(0, 0, 0))
            by_type[instruction.kind] = TypeScore(t.strict + s, t.loose + lo, t.total + 1)
        n_instr += len(strict)
        strict_instr += sum(strict)
        loose_instr += sum(loose)
        failed = tuple(i.kind for i, s in zip(prompt.instructions, strict, strict=True) if not s)
        outcomes.append(PromptOutcome(prompt.id, all(strict), all(loose), failed, answer))
    n = len(outcomes)
    return FollowResult(
        model=model,
        prompt_mode=mode,
        prompt_strict=sum(o.strict for o in outcomes) / n,
        prompt_loose=sum(o.loose for o in outcomes) / n,
        instruction_strict=strict_instr / n_instr,
        instruction_loose=loose_instr / n_instr,
        by_type=dict(sorted(by_type.items())),
        outcomes=tuple(outcomes),
    )


def evaluate_follow(
    models: Sequence[ResolvedModel],
    prompts: Sequence[FollowPrompt],
    params: GenerationParams | None = None,
    options: LoadOptions | None = None,
    on_progress: ProgressFn | None = None,
    cancel: Event | None = None,
) -> list[FollowResult]:
    """Answer every prompt greedily with each model (template or raw, by its kind) and check the answers."""
    if not prompts:
        raise MeasureError("the instruction-following prompt set is empty")
    params = params or GenerationParams(max_tokens=256, temperature=0)
    options = options or LoadOptions(n_ctx=2048)
    results = []
    total, done = len(models) * len(prompts), 0
    for model in models:
        with open_model(model, options) as worker:
            has_template = bool(worker.facts.chat_template)
            answers: list[str] = []
            mode = PromptMode.COMPLETION
            for prompt in prompts:
                if cancel is not None and cancel.is_set():
                    raise MeasureError("evaluation cancelled")
                if on_progress:
                    on_progress(Progress(model.display_name, f"follow {prompt.id}", done, total))
                request = single_turn(model.kind, has_template, prompt.text, params)
                mode = request.mode
                answers.append(worker.generate(request).text)
                done += 1
        results.append(summarize(ModelRecord.of(model), mode, prompts, answers))
    return results
