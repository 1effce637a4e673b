"""An intent-classification set for the same bank: 8 intents, a few hundred short rows.

Rows are built from hand-written phrasings combined with openers and closers, sampled with a
fixed seed, so the set is varied enough to need learning yet deterministic.
"""

from __future__ import annotations

import random
import re

INTENTS: dict[str, tuple[str, ...]] = {
    "block_card": ("my card was stolen", "I lost my credit card", "block my card", "freeze my card right now",
                   "someone used my card without permission", "I can't find my card anywhere",
                   "please cancel my stolen card", "my wallet with my card is gone"),
    "card_limit": ("what is my credit limit", "raise my card limit", "I need a higher spending limit",
                   "can you increase my limit", "how much can I spend on my card",
                   "lower my credit limit", "why was my limit reduced", "is my limit enough for a big purchase"),
    "instalments": ("can I pay this purchase in instalments", "split my purchase into monthly payments",
                    "set up an instalment plan", "how does SplitPay work", "spread the cost of my TV over months",
                    "convert a purchase to instalments", "cancel my instalment plan", "how many instalments are left"),
    "fees": ("what fees do you charge", "why was I charged a fee", "what is the annual fee",
             "how much is the late payment fee", "is there a foreign transaction fee",
             "refund the fee on my statement", "what does a replacement card cost", "explain the charges on my card"),
    "balance": ("what is my balance", "how much do I owe", "show my current balance",
                "how much money is left on my card", "what is my statement balance",
                "check my available credit", "when is my payment due", "what is the minimum payment this month"),
    "dispute": ("I don't recognise this transaction", "dispute a charge", "I was charged twice",
                "the merchant never delivered my order", "there is a wrong amount on my statement",
                "a payment I did not make", "get my money back for a faulty item", "report a suspicious charge"),
    "change_pin": ("change my PIN", "I forgot my PIN", "reset my card PIN", "my PIN is blocked",
                   "how do I set a new PIN", "I typed the wrong PIN three times", "send me a new PIN",
                   "can I choose my own PIN"),
    "greeting": ("hello", "hi there", "good morning", "hey", "good afternoon", "hi, is anyone there",
                 "hello, nice to meet you", "good evening"),
}

OPENERS = ("", "", "hi, ", "hello, ", "please, ", "excuse me, ", "quick question: ", "sorry, ")
CLOSERS = ("", "", "?", "!", " please", " thanks", " asap", " today")


def intent_rows(seed: int = 11, per_intent: int = 40) -> list[dict]:
    """``per_intent`` distinct rows for each intent (greetings take no opener: 'hi, hello' reads oddly)."""
    rng = random.Random(seed)
    rows = []
    for label, phrasings in INTENTS.items():
        openers = ("",) if label == "greeting" else OPENERS
        # variants that differ only in punctuation or case count as one (the dedupe step would drop them)
        by_words: dict[str, str] = {}
        for text in sorted(f"{o}{p}{c}".strip() for o in openers for p in phrasings for c in CLOSERS):
            by_words.setdefault(" ".join(re.findall(r"\w+", text.lower())), text)
        candidates = sorted(by_words.values())
        chosen = rng.sample(candidates, min(per_intent, len(candidates)))
        rows.extend({"text": text[0].upper() + text[1:], "label": label} for text in chosen)
    rng.shuffle(rows)
    return rows
