"""Reflection: draw, let a thinker that sees look at the image, and correct it when it judges it wrong.

ThinkGen's fifth scenario. A round is two passes:

1. *judge*: a vision-language thinker sees the prompt and the image, thinks, and writes after
   ``</think>`` either :data:`RIGHT` ("the image is right") or an edit instruction in the editing
   suite's grammar ("make the red circle blue");
2. *correct*: when the verdict is not :data:`RIGHT`, a :class:`Correction` strategy makes the next
   image. :class:`EditCorrection` (the default, and ThinkGen's reading) applies the verdict as
   ``thinkgen edit`` does: the instruction in direct mode, the image as the DiT's reference.
   :class:`Redraw` draws the prompt again from new noise: the judge then acts as a verifier that
   decides which drawings to keep, and its instruction is not used. :class:`Checked` keeps either
   one's result only when the judge calls it right ("checked-edit"), or tries up to four and keeps
   the first the judge calls right ("retry-edit").

The judge checks each image against the prompt, or (``judge_against="rewrite"``, think mode) against
the instruction the drawing thinker wrote: a judge that has not learned a fact the thinker has
("a tricycle has three wheels") then checks the drawing, not its own reading of the riddle.

Two checks on the judge are judges too: :class:`VotingJudge` reads each image several times,
sampling, and faults it only when a quorum of readings do; :class:`ReadingCheckedJudge` takes back
a fault that the judge's own trace contradicts (it reads the image as what the request asks for).

Rounds stop at the first verdict of :data:`RIGHT`, or after ``rounds`` corrections. The judge is the
drawing pipeline's own thinker by default; ``judge=`` lets another thinker that sees judge: another
pipeline's, or a thinker alone (:func:`load_judge`). The embedded text model draws and edits best;
the embedded judge, a thinker taught on its drawings, judges them. Every round's image and verdict
are returned, so a caller sees what was judged and changed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image

    from .pipeline import ThinkGenPipeline
    from .thinker import Thinker

from .world.edits import NO_EDIT as RIGHT  # the verdict that ends reflection

# What the thinker is asked about an image: the same text in generation, the reflection suite's
# evaluation and RL. ``shown`` is SHOWN_ATTACHED for a thinker that sees the image; a text-only
# thinker is given a faithful description of the scene instead (evaluation and RL only).
REFLECTION_PROMPT = ("The request was: {prompt}. The image shows {shown}. Write the one edit instruction that "
                     "makes the image match the request, or say that the image is right.")
SHOWN_ATTACHED = "what is attached"
# A redraw in round r (1, 2, ...) of prompt i uses seed + i + r * SEED_STRIDE, an edit in round r
# seed + i + (r - 1) * SEED_STRIDE: far from the first draws' seeds (seed + i), so a correction never
# repeats another prompt's first noise, and a round that tries again draws new noise.
SEED_STRIDE = 1_000_003
# A "retry-" correction's attempt k (0, 1, ...) adds k * TRY_STRIDE to the seed: beyond any round's.
TRY_STRIDE = 100_000_007


def judge_prompt(prompt: str, shown: str = SHOWN_ATTACHED) -> str:
    return REFLECTION_PROMPT.format(prompt=prompt, shown=shown)


def is_right(verdict: str) -> bool:
    return " ".join(verdict.lower().split()).rstrip(".") == RIGHT


@dataclass
class ReflectionRound:
    image: Image.Image  # the image the thinker judged
    reasoning: str  # its think block
    verdict: str  # what it wrote after </think>: RIGHT or an edit instruction
    right: bool
    faulting_votes: int | None = None  # a VotingJudge's: how many of its readings faulted the image


@dataclass
class ReflectionOutput:
    images: list[Image.Image]  # the final image of each prompt
    rounds: list[list[ReflectionRound]] = field(default_factory=list)  # per prompt, in order
    first: list[Image.Image] = field(default_factory=list)  # the image before any correction


# ----------------------------------------------------------------------------- corrections
class Correction:
    """How a round turns an image judged wrong into the next image."""

    name: str  # what --correct calls it

    def __call__(self, pipe: ThinkGenPipeline, prompt: str, image: Image.Image, verdict: str, *, index: int,
                 round_number: int, seed: int, think: bool, drawing: dict[str, Any],
                 judge: Thinker, request: str | None = None) -> Image.Image:
        """``request``: what the judge checks images against (default ``prompt``; see :func:`reflect`)."""
        raise NotImplementedError


class EditCorrection(Correction):
    """Apply the verdict as an edit of the image (direct mode, the image as the DiT's reference).
    Round 1 edits with the seed prompt ``index`` drew with; later rounds with their own."""

    name = "edit"

    def __call__(self, pipe, prompt, image, verdict, *, index, round_number, seed, think, drawing, judge,
                 request=None):
        noise = seed + index + (round_number - 1) * SEED_STRIDE
        return pipe([verdict], think=False, images=[[image]], seed=noise, **drawing).images[0]


class Redraw(Correction):
    """Draw the prompt again, in the mode it was drawn in, from new noise (each round its own seed):
    sampling with the judge as the verifier. The verdict's instruction is not used."""

    name = "redraw"

    def __call__(self, pipe, prompt, image, verdict, *, index, round_number, seed, think, drawing, judge,
                 request=None):
        return pipe([prompt], think=think, seed=seed + index + round_number * SEED_STRIDE, **drawing).images[0]


class Checked(Correction):
    """Another correction, kept only when the judge calls its result right; otherwise the image
    stays as it was (and a next round tries again with new noise). A judge that wrongly faults a
    right image then rarely gets to spoil it: the correction must also pass the judge.

    With ``tries`` > 1 a round makes up to that many corrections, each from new noise, and keeps
    the first the judge calls right ("retry-edit": the judge as a verifier of several edits, at up
    to ``tries`` edits and judgements per image and round). ``verifier`` (default: the round's
    judge) decides instead whether a correction is kept: for example a :class:`VotingJudge` that
    keeps one only when every vote calls it right, while a laxer one decides what to correct."""

    def __init__(self, inner: Correction, tries: int = 1, verifier: Thinker | VotingJudge | None = None) -> None:
        if tries < 1:
            raise ValueError(f"tries must be >= 1, got {tries}")
        self.inner, self.tries, self.verifier = inner, tries, verifier
        self.name = f"checked-{inner.name}" if tries == 1 else f"retry-{inner.name}"

    def __call__(self, pipe, prompt, image, verdict, *, index, round_number, seed, think, drawing, judge,
                 request=None):
        for attempt in range(self.tries):  # attempt k draws from seed + k * TRY_STRIDE: new noise
            corrected = self.inner(pipe, prompt, image, verdict, index=index, round_number=round_number,
                                   seed=seed + attempt * TRY_STRIDE, think=think, drawing=drawing, judge=judge)
            verifier = judge if self.verifier is None else self.verifier
            judged = verifier.encode([judge_prompt(request or prompt)], think=True, images=[[corrected]], seed=seed)
            if is_right(judged.rewritten[0].strip()):
                return corrected
        return image


RETRIES = 4  # corrections a "retry-" strategy tries per image and round
JUDGED_AGAINST = ("prompt", "rewrite")  # what generate_with_reflection's judge checks an image against
CORRECTIONS: dict[str, Callable[[], Correction]] = {
    "edit": EditCorrection, "redraw": Redraw,
    "checked-edit": lambda: Checked(EditCorrection()), "checked-redraw": lambda: Checked(Redraw()),
    "retry-edit": lambda: Checked(EditCorrection(), RETRIES), "retry-redraw": lambda: Checked(Redraw(), RETRIES),
}


def correction(name: str | Correction, tries: int | None = None) -> Correction:
    """The correction a name calls (:data:`CORRECTIONS`). ``tries`` sets how many corrections a
    "retry-" one makes per image and round (default :data:`RETRIES`); other names take none."""
    if isinstance(name, Correction):
        return name
    if name not in CORRECTIONS:
        raise ValueError(f"unknown reflection correction {name!r}; choose from {sorted(CORRECTIONS)}")
    if tries is None:
        return CORRECTIONS[name]()
    if not name.startswith("retry-"):
        raise ValueError(f"tries applies to the retry- corrections, not {name!r}")
    return Checked(CORRECTIONS[name]().inner, tries)


def check_judge_against(value: str) -> None:
    """Refuse a ``judge_against`` that is not one of :data:`JUDGED_AGAINST`."""
    if value not in JUDGED_AGAINST:
        raise ValueError(f"judge_against must be one of {JUDGED_AGAINST}, got {value!r}")


def describe(correct: Correction) -> str:
    """A correction as a results table names it: "edit", "retry-edit, up to 8 tries", ..."""
    tries = getattr(correct, "tries", 1)
    name = correct.name if tries == 1 else f"{correct.name}, up to {tries} tries"
    verifier = getattr(correct, "verifier", None)
    if isinstance(verifier, VotingJudge):
        name += f", kept when fewer than {verifier.quorum} of {verifier.votes} votes fault it"
    elif isinstance(verifier, ReadingCheckedJudge):
        name += f", kept by a judge of {describe_judge(verifier)}"
    elif verifier is not None:
        name += ", kept by the judge's greedy reading"
    return name


GREEDY_JUDGE = "one greedy reading"  # how describe_judge names a plain judge


def describe_judge(judge: Any) -> str:
    """A judge as a results table names it: "one greedy reading" or "8 votes, wrong when 6 fault it"."""
    if isinstance(judge, ReadingCheckedJudge):
        return describe_judge(judge.judge) + ", a fault its own reading contradicts taken back"
    if isinstance(judge, VotingJudge):
        return f"{judge.votes} votes at temperature {judge.temperature:g}, wrong when {judge.quorum} fault it"
    return GREEDY_JUDGE


# ----------------------------------------------------------------------------- judges
@dataclass
class Judgement:
    """What a judge returns for a batch (the fields of a thinker's output that reflection reads),
    with each image's count of votes that fault it."""

    reasoning: list[str]  # the think block of the vote whose verdict was taken
    rewritten: list[str]  # the verdict: RIGHT or an edit instruction
    faulting_votes: list[int]  # how many of the votes did not call the image right


class VotingJudge:
    """A judge that judges each image ``votes`` times, sampling its trace at ``temperature``, and
    calls it wrong only when at least ``quorum`` votes do (self-consistency). A judge taught on
    drawings misreads some of them: a greedy judgement that faults a right image is one reading,
    and a correction may then spoil the image. Asking for agreement among sampled readings keeps
    right images whose faults the judge is unsure of; the verdict applied is the faulting votes'
    most common one (ties: the earliest vote's). A ``checked-``/``retry-`` correction without a
    ``verifier`` keeps a correction by the same rule (fewer than ``quorum`` faulting votes).

    ``quorum`` defaults to a majority (``votes // 2 + 1``); ``quorum = votes`` asks all to agree."""

    def __init__(self, judge: Thinker, votes: int = 5, quorum: int | None = None, temperature: float = 1.0) -> None:
        from .thinker import Thinker

        quorum = votes // 2 + 1 if quorum is None else quorum
        if votes < 1 or not 1 <= quorum <= votes:
            raise ValueError(f"a voting judge needs votes >= 1 and 1 <= quorum <= votes, got {votes} and {quorum}")
        # the same weights, sampling: each vote is one reading of the image
        config = replace(judge.config, do_sample=True, temperature=float(temperature))
        self.sampler = Thinker(judge.model, tokenizer=judge.tokenizer, processor=judge.processor, config=config)
        self.processor = judge.processor
        self.votes, self.quorum, self.temperature = votes, quorum, float(temperature)

    def encode(self, prompts: Sequence[str], think: bool = True, images: Sequence[Sequence[Any]] | None = None,
               seed: int | None = None) -> Judgement:
        """Judge each prompt's images ``votes`` times in one batch (row ``i * votes + v`` is vote ``v``
        of prompt ``i``)."""
        prompts = list(prompts)
        repeated = [p for p in prompts for _ in range(self.votes)]
        shown = None if images is None else [group for group in images for _ in range(self.votes)]
        out = self.sampler.encode(repeated, think=think, images=shown, seed=seed)
        reasoning, verdicts, faulting = [], [], []
        for i in range(len(prompts)):
            rows = range(i * self.votes, (i + 1) * self.votes)
            wrong = [r for r in rows if not is_right(out.rewritten[r].strip())]
            if len(wrong) >= self.quorum:
                verdict = Counter(out.rewritten[r].strip() for r in wrong).most_common(1)[0][0]
                row = next(r for r in wrong if out.rewritten[r].strip() == verdict)
            else:
                row = next(r for r in rows if r not in wrong)
            reasoning.append(out.reasoning[row])
            verdicts.append(out.rewritten[row].strip())
            faulting.append(len(wrong))
        return Judgement(reasoning, verdicts, faulting)


class ReadingCheckedJudge:
    """A judge whose fault stands only when its own trace allows it. A judge writes what the
    request asks for and what the image shows, then its verdict; a small one sometimes reads the
    image as matching and still faults it ("The request asks for four circles. The image shows
    four red circles. They differ."), and its edit then spoils a right image. ``reading_matches``
    reads a trace and says whether the two readings match (None: it cannot tell); when it says
    they do, a fault is taken back (RIGHT). ShapeWorld's rule is
    :func:`thinkgen.world.corpora.reading_matches`. Wraps any judge, a :class:`VotingJudge` too;
    a ``checked-``/``retry-`` correction keeps its own verifier."""

    def __init__(self, judge: Thinker | VotingJudge, reading_matches: Callable[[str], bool | None]) -> None:
        self.judge, self.reading_matches = judge, reading_matches
        self.processor = judge.processor

    def encode(self, prompts: Sequence[str], think: bool = True, images: Sequence[Sequence[Any]] | None = None,
               seed: int | None = None) -> Any:
        out = self.judge.encode(prompts, think=think, images=images, seed=seed)
        verdicts = [RIGHT if not is_right(verdict.strip()) and self.reading_matches(trace) is True else verdict
                    for verdict, trace in zip(out.rewritten, out.reasoning, strict=True)]
        return replace(out, rewritten=verdicts)


# ----------------------------------------------------------------------------- the loop
def generate_with_reflection(pipe: ThinkGenPipeline, prompts: str | list[str], rounds: int = 1,
                             think: bool = True, seed: int = 0, judge: ThinkGenPipeline | Thinker | None = None,
                             correct: str | Correction = "edit", judge_against: str = "prompt",
                             **drawing: Any) -> ReflectionOutput:
    """Draw each prompt, then up to ``rounds`` judge-and-correct rounds. ``drawing`` goes to every
    draw (steps, guidance scales, size). Prompt ``i`` draws with ``seed + i``, as ``pipe(...)``.

    ``judge_against`` is what the judge checks each image against: the "prompt" (default), or, in
    think mode, the drawing thinker's "rewrite" (the instruction it wrote after ``</think>``), so a
    judge that lacks the thinker's knowledge checks the drawing, not the riddle (in direct mode the
    prompt either way)."""
    check_judge_against(judge_against)
    judge = _judge_thinker(pipe if judge is None else judge, rounds)
    correct = correction(correct)
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    first = pipe(prompts, think=think, seed=seed, **drawing)
    requests = first.rewritten if think and judge_against == "rewrite" else None
    return reflect(pipe, prompts, first.images, rounds, seed=seed, judge=judge, correct=correct, think=think,
                   requests=requests, **drawing)


def reflect(pipe: ThinkGenPipeline, prompts: list[str], images: list[Image.Image], rounds: int = 1,
            seed: int = 0, judge: ThinkGenPipeline | Thinker | None = None, correct: str | Correction = "edit",
            think: bool = True, requests: list[str] | None = None, **drawing: Any) -> ReflectionOutput:
    """Up to ``rounds`` judge-and-correct rounds on images already drawn (``images[i]`` for
    ``prompts[i]``, by ``pipe`` or by any other model). ``judge`` (default: ``pipe``), a pipeline or a
    thinker, must see images; ``pipe`` makes the corrections. ``think`` is the mode a redraw draws in.
    ``requests[i]`` is what image ``i`` is judged against (default: ``prompts[i]``)."""
    judge = _judge_thinker(pipe if judge is None else judge, rounds)
    correct = correction(correct)
    if len(images) != len(prompts):
        raise ValueError(f"reflect needs one image per prompt: {len(prompts)} prompts, {len(images)} images")
    requests = list(prompts) if requests is None else list(requests)
    if len(requests) != len(prompts):
        raise ValueError(f"reflect needs one request per prompt: {len(prompts)} prompts, {len(requests)} requests")
    current = list(images)
    history: list[list[ReflectionRound]] = [[] for _ in prompts]
    open_rows = list(range(len(prompts)))  # prompts not yet judged right
    for round_ in range(1, rounds + 1):
        if not open_rows:
            break
        judged = judge.encode([judge_prompt(requests[i]) for i in open_rows], think=True,
                              images=[[current[i]] for i in open_rows], seed=seed)
        wrong = []
        for row, i in enumerate(open_rows):
            verdict = judged.rewritten[row].strip()
            right = is_right(verdict)
            votes = judged.faulting_votes[row] if isinstance(judged, Judgement) else None
            history[i].append(ReflectionRound(current[i], judged.reasoning[row], verdict, right, votes))
            if not right:
                wrong.append(i)
        for i in wrong:  # one call per image: each has its own image and seed
            current[i] = correct(pipe, prompts[i], current[i], history[i][-1].verdict, index=i, round_number=round_,
                                 seed=seed, think=think, drawing=drawing, judge=judge, request=requests[i])
        open_rows = wrong
    return ReflectionOutput(current, history, list(images))


def load_judge(folder: str | Path) -> Thinker:
    """A judge from a folder: a pipeline's thinker, or a thinker alone (a thinker stage's output:
    ``thinker/``, ``processor/``, ``thinker_config.json``), in float32 on the CPU."""
    from .train.thinker_stage import as_thinker, load_thinker

    folder = Path(folder)
    if not ((folder / "model_index.json").exists() or (folder / "thinker").is_dir()):
        raise ValueError(f"{folder} is neither a pipeline folder nor a thinker folder")
    model, text, config = load_thinker(folder)
    return as_thinker(model.float().eval(), text, config)


def _judge_thinker(judge: ThinkGenPipeline | Thinker, rounds: int) -> Thinker:
    """The thinker that judges (a pipeline's, or the one given), checked to see images."""
    thinker = getattr(judge, "thinker", judge)
    if rounds < 0:
        raise ValueError(f"reflect rounds must be >= 0, got {rounds}")
    if rounds and thinker.processor is None:
        raise ValueError("reflection needs a thinker that sees images (a vision-language thinker) to judge; "
                         "this one reads text only")
    return thinker
