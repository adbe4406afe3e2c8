"""The field's caption metrics, computed by the reference implementation (pycocoevalcap, the COCO caption toolkit).

PTB tokenization (Java), BLEU-1..4 ("closest" reference length), METEOR 1.5 (Java), ROUGE-L (beta 1.2) and
CIDEr-D (pycocoevalcap's `Cider`: n=4, sigma 6, clipped, x10), corpus-level with every reference of every pair;
SPICE on request when its Stanford CoreNLP models are present. Scores are returned raw (as pycocoevalcap gives
them) and x100 (as papers print them), under explicit names.

CIDEr-D's document frequencies come from the references of the evaluated set: a single pair always scores 0, and
scores depend on the set's size and make-up.
"""

import os
import shutil
import subprocess
import threading
import warnings
from pathlib import Path

METRICS = ("bleu", "meteor", "rouge", "cider")
JAVA_TIMEOUT = 600  # seconds a Java metric may take before it is considered hung


class JavaNotFoundError(RuntimeError):
    """The PTB tokenizer and METEOR need a Java runtime."""


def check_java() -> str:
    """Returns the `java` path, or raises JavaNotFoundError with the install command (never hangs)."""
    java = shutil.which("java")
    if java is None:
        raise JavaNotFoundError(
            "The COCO caption metrics (PTB tokenizer, METEOR) need Java, and `java` is not on PATH. "
            "Install a runtime, e.g. `apt-get install default-jre-headless`."
        )
    try:
        subprocess.run([java, "-version"], capture_output=True, timeout=60, check=True)
    except (subprocess.SubprocessError, OSError) as error:
        raise JavaNotFoundError(f"`{java} -version` failed: {error}") from error
    return java


def _validate(predictions, references) -> None:
    if len(predictions) != len(references):
        raise ValueError(
            f"Got {len(predictions)} predictions but {len(references)} reference lists; give one list per prediction"
        )
    if not predictions:
        raise ValueError("No predictions to score")
    for i, (prediction, refs) in enumerate(zip(predictions, references)):
        if not isinstance(prediction, str):
            raise ValueError(f"Prediction {i} is a {type(prediction).__name__}, not a string")
        if isinstance(refs, str) or not refs or not all(isinstance(r, str) for r in refs):
            raise ValueError(f"References of pair {i} must be a non-empty list of strings, got {refs!r}")


def tokenize(predictions: list[str], references: list[list[str]]) -> tuple[dict, dict]:
    """PTB-tokenizes (lower case, punctuation removed) into pycocoevalcap's {id: [captions]} dicts."""
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    check_java()
    _writable_package_dir()
    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({i: [{"caption": r} for r in refs] for i, refs in enumerate(references)})
    res = tokenizer.tokenize({i: [{"caption": p}] for i, p in enumerate(predictions)})
    return gts, res


class _TimedMeteor:
    """pycocoevalcap's METEOR 1.5 (one Java process, reused), stopped with an error if Java stops answering."""

    def __init__(self):
        from pycocoevalcap.meteor.meteor import Meteor

        self.scorer = Meteor()

    def __call__(self, gts: dict, res: dict) -> float:
        result: dict = {}

        def run():
            try:
                result["score"] = self.scorer.compute_score(gts, res)[0]
            except Exception as error:  # surfaced below, in the caller's thread
                result["error"] = error

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        worker.join(JAVA_TIMEOUT)
        if worker.is_alive():
            self.scorer.meteor_p.kill()
            raise RuntimeError(f"METEOR (Java) gave no answer within {JAVA_TIMEOUT} s and was stopped")
        if "error" in result:
            raise RuntimeError(f"METEOR failed: {result['error']}") from result["error"]
        return float(result["score"])


def spice_available() -> bool:
    """SPICE needs Stanford CoreNLP 3.6.0 models, which pycocoevalcap downloads on first use (impossible offline)."""
    from pycocoevalcap.spice import spice  # pycocoevalcap itself is a namespace package (no __file__)

    lib = Path(spice.__file__).parent / "lib"
    return (lib / "stanford-corenlp-3.6.0.jar").is_file() and (lib / "stanford-corenlp-3.6.0-models.jar").is_file()


def _score(gts: dict, res: dict, metrics, meteor: _TimedMeteor | None, spice: bool) -> dict[str, float]:
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    scores: dict[str, float] = {}
    if "bleu" in metrics:
        bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
        scores.update({f"bleu_{n + 1}": float(value) for n, value in enumerate(bleu)})
    if "meteor" in metrics:
        scores["meteor"] = meteor(gts, res)
    if "rouge" in metrics:
        scores["rouge_l"] = float(Rouge().compute_score(gts, res)[0])
    if "cider" in metrics:
        scores["cider_d"] = float(Cider().compute_score(gts, res)[0])
    if spice:
        from pycocoevalcap.spice.spice import Spice

        scores["spice"] = float(Spice().compute_score(gts, res)[0])
    scores.update({f"{name}_x100": 100.0 * value for name, value in list(scores.items())})
    return scores


def grouped_coco_caption_scores(
    predictions: list[str],
    references: list[list[str]],
    groups: dict[str, list[int]],
    metrics=METRICS,
    spice: bool = False,
) -> dict[str, dict[str, float]]:
    """Scores each group of pairs (given by indices) as its own corpus, tokenizing once and reusing one METEOR
    process. Returns, per group, raw scores (`bleu_1`..`bleu_4`, `meteor`, `rouge_l`, `cider_d`, optionally
    `spice`) and the same x100 under `<name>_x100`."""
    _validate(predictions, references)
    unknown = set(metrics) - set(METRICS)
    if unknown:
        raise ValueError(f"Unknown metric(s) {sorted(unknown)}; choose from {METRICS}")
    for name, indices in groups.items():
        if not indices:
            raise ValueError(f"Group {name!r} is empty")
        if len(indices) == 1 and "cider" in metrics:
            warnings.warn(
                f"Group {name!r} holds one pair: CIDEr-D is corpus-level (document frequencies come from the "
                "evaluated references), so a single pair always scores 0. Score a whole test set.",
                stacklevel=2,
            )
    if spice and not spice_available():
        warnings.warn(
            "SPICE skipped: it needs the Stanford CoreNLP 3.6.0 jars in pycocoevalcap/spice/lib, which "
            "pycocoevalcap downloads on first use and this machine cannot fetch.",
            stacklevel=2,
        )
        spice = False
    gts, res = tokenize(predictions, references)
    meteor = _TimedMeteor() if "meteor" in metrics else None
    return {
        name: _score({i: gts[i] for i in indices}, {i: res[i] for i in indices}, metrics, meteor, spice)
        for name, indices in groups.items()
    }


def coco_caption_scores(
    predictions: list[str], references: list[list[str]], metrics=METRICS, spice: bool = False
) -> dict[str, float]:
    """Corpus-level scores of `predictions` against every reference list (see `grouped_coco_caption_scores`)."""
    groups = {"all": list(range(len(predictions)))}
    return grouped_coco_caption_scores(predictions, references, groups, metrics, spice)["all"]


def _writable_package_dir() -> None:
    """PTBTokenizer writes its temporary file inside the installed package: fail early, with the reason."""
    from pycocoevalcap.tokenizer import ptbtokenizer

    folder = os.path.dirname(ptbtokenizer.__file__)
    if not os.access(folder, os.W_OK):
        raise PermissionError(f"pycocoevalcap's PTB tokenizer writes into {folder}, which is not writable")
