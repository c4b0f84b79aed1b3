"""Token ids of templates filled with class names, composed from each part's own tokens.

CLIP's tokenizer cleans a text, splits it into words with one regular expression and encodes each
word by byte-pair merges on its own. When no word runs across the seams between a template and the
name put into it, the ids of `template.format(name)` are the template's ids before the name, the
name's ids and the template's ids after it: each part is tokenized once, however many templates
and names are combined (60 templates x 500 names: 560 tokenizer calls instead of 30,000).
"""

from __future__ import annotations

import string
from typing import Callable, Sequence

import torch
from open_clip.tokenizer import SimpleTokenizer
from torch import Tensor

# Text the tokenizer's cleaning leaves as it is (ftfy and HTML unescaping change nothing in printable
# ASCII without "&"; collapsing whitespace changes no word) and in which its one multi-character
# special pattern ("<start_of_text>") cannot start.
_PLAIN = frozenset(string.printable) - {"&", "<"}


def _kind(char: str) -> str:
    """The character class of the tokenizer's word pattern: letter, digit, space or other."""
    if char.isalpha():
        return "letter"
    if char.isdigit():
        return "digit"
    return "space" if char.isspace() else "other"


def seam_is_safe(left: str, right: str) -> bool:
    """Whether no word of the tokenizer's pattern can run across the end of `left` into `right`:
    a letter run or a run of other characters would continue, and an apostrophe could start a
    contraction ("'s", "'ll")."""
    if not left or not right:
        return True
    a, b = _kind(left[-1]), _kind(right[0])
    if "space" in (a, b):
        return True
    return not (a == b and a in ("letter", "other")) and not (left[-1] == "'" and b == "letter")


class TemplateFiller:
    """`fill(template, names)` -> (C, context_length) ids equal to `tokenizer([template.format(n) ...])`.

    Composes the ids from the template's and the names' own tokens (each tokenized once and kept)
    where that is exact: open_clip's `SimpleTokenizer` with its default cleaning, plain text, a
    single "{}" and safe seams (`seam_is_safe`); any other template or name is tokenized whole.
    """

    def __init__(self, tokenizer: Callable):
        self.tokenizer = tokenizer
        simple = isinstance(tokenizer, SimpleTokenizer) and tokenizer.reduction_fn is None
        self._composable = simple and tokenizer.clean_fn.__name__ in ("_clean_lower", "_clean_whitespace")
        self._words: dict[str, list[int]] = {}  # text part -> its ids without SOT / EOT

    def fill(self, template: str, names: Sequence[str]) -> Tensor:
        """(C, L) token ids of `template` filled with each name."""
        before, brace, after = template.partition("{}")
        if not (self._composable and brace and set(before + after) <= _PLAIN - {"{", "}"}):
            return self.tokenizer([template.format(name) for name in names])
        composes = [self._composes(before, name, after) for name in names]
        ids = self._compose(before, [name if ok else "" for name, ok in zip(names, composes)], after)
        whole = [i for i, ok in enumerate(composes) if not ok]  # tokenized whole, in place of the blanks
        if whole:
            ids[whole] = self.tokenizer([template.format(names[i]) for i in whole])
        return ids

    def head_length(self, template: str) -> int:
        """How many tokens come before the name: [SOT] and the template's words before "{}" (the
        prefix that every name of the template shares, where the name does not join its last word);
        0 for a tokenizer whose parts cannot be composed (its templates are not told apart)."""
        if not self._composable:
            return 0
        return 1 + len(self._ids(template.partition("{}")[0]))

    def _compose(self, before: str, names: list[str], after: str) -> Tensor:
        """(C, L): [SOT] before name after [EOT] from each part's kept ids, cut as the tokenizer cuts
        (at the context length, the last kept token replaced by EOT)."""
        sot, eot, length = self.tokenizer.sot_token_id, self.tokenizer.eot_token_id, self.tokenizer.context_length
        head, tail = torch.tensor([sot, *self._ids(before)]), torch.tensor([*self._ids(after), eot])
        name_ids = [self._ids(name) for name in names]
        counts = torch.tensor([len(ids) for ids in name_ids], dtype=torch.long)
        rows = torch.arange(len(names))
        ids = torch.zeros(len(names), len(head) + max(counts.tolist(), default=0) + len(tail), dtype=torch.long)
        ids[:, : len(head)] = head
        starts = torch.cumsum(counts, 0) - counts  # where each name's ids begin in the flat list
        within = torch.arange(int(counts.sum())) - starts.repeat_interleave(counts)
        ids[rows.repeat_interleave(counts), len(head) + within] = torch.tensor([t for i in name_ids for t in i],
                                                                                dtype=torch.long)
        ids[rows[:, None], len(head) + counts[:, None] + torch.arange(len(tail))] = tail
        if ids.shape[1] < length:
            return torch.cat([ids, ids.new_zeros(len(names), length - ids.shape[1])], 1)
        ids[len(head) + counts + len(tail) > length, length - 1] = eot
        return ids[:, :length].contiguous()

    @staticmethod
    def _composes(before: str, name: str, after: str) -> bool:
        """Whether `name` between `before` and `after` tokenizes as the three parts."""
        return bool(name.strip()) and set(name) <= _PLAIN and seam_is_safe(before, name) and seam_is_safe(name, after)

    def _ids(self, text: str) -> list[int]:
        if text not in self._words:
            self._words[text] = self.tokenizer.encode(text)
        return self._words[text]
