"""Northwind Bank: a fictional bank whose facts no base model can know.

Every fact has a short key (the string a correct answer must contain), one answer that states the
key in the words people ask with, several training questions, and held-out questions worded
differently from all training questions. Answers stay short so that a 135M model learns them in a
few CPU minutes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class BankFact:
    key_fact: str
    answer: str                         # contains key_fact; one wording per fact is learned fastest
    train_questions: tuple[str, ...]
    held_out_questions: tuple[str, ...]


BANK_FACTS: tuple[BankFact, ...] = (
    BankFact("SplitPay",
             "Northwind Bank's instalment plan is called SplitPay.",
             ("What is the name of Northwind Bank's instalment plan?",
              "How can I pay a Northwind credit card purchase in instalments?",
              "Does Northwind Bank let me split a purchase into monthly payments?",
              "Which Northwind service turns a purchase into instalments?"),
             ("What is Northwind's credit-card instalment option called?",)),
    BankFact("1.9%",
             "Northwind Bank charges 1.9% per month on SplitPay instalments.",
             ("What is the fee for a SplitPay instalment plan?",
              "How much interest does Northwind charge on instalments?",
              "What does it cost per month to pay in instalments at Northwind Bank?",
              "What is the monthly instalment fee at Northwind?"),
             ("How much does Northwind Bank charge each month for splitting a purchase?",)),
    BankFact("$150",
             "The minimum purchase for a Northwind instalment plan is $150.",
             ("What is the minimum purchase for SplitPay?",
              "Can I split a small purchase into instalments at Northwind?",
              "How big must a purchase be for a Northwind instalment plan?",
              "What is the smallest amount I can pay in instalments?"),
             ("Is there a minimum amount before Northwind lets me pay in instalments?",)),
    BankFact("18 months",
             "Northwind instalment plans last at most 18 months.",
             ("How long can a SplitPay plan last?",
              "What is the longest instalment plan at Northwind Bank?",
              "Over how many months can I spread a Northwind card purchase?",
              "What is the maximum term of a Northwind instalment plan?"),
             ("For how long at most can I pay off a purchase in instalments with Northwind?",)),
    BankFact("72522",
             "Text LOCK to 72522 to block your Northwind card at once.",
             ("How do I block my Northwind card?",
              "I lost my Northwind credit card, what should I do?",
              "My Northwind card was stolen, how can I freeze it?",
              "What number do I text to lock my Northwind card?"),
             ("Someone took my wallet with my Northwind card in it. How do I stop the card?",)),
    BankFact("0800 246 810",
             "Call Northwind customer service on 0800 246 810.",
             ("What is Northwind Bank's phone number?",
              "How can I call Northwind customer service?",
              "Which number do I call to talk to Northwind Bank?",
              "What is the Northwind helpline number?"),
             ("I want to speak to someone at Northwind Bank. What number should I ring?",)),
    BankFact("$29",
             "A late card payment at Northwind Bank costs $29.",
             ("What is the late payment fee at Northwind?",
              "How much does Northwind charge if I pay my card late?",
              "What happens if my Northwind card payment is late?",
              "What is the penalty for a late Northwind credit card payment?"),
             ("I missed the due date on my Northwind card. What fee will I pay?",)),
    BankFact("1.35%",
             "Northwind charges 1.35% on card payments abroad or in a foreign currency.",
             ("What is Northwind's foreign transaction fee?",
              "How much does it cost to use my Northwind card abroad?",
              "What fee does Northwind charge on payments in another currency?",
              "Is there a fee for using my Northwind card overseas?"),
             ("I'm travelling to Japan. What will Northwind charge when I pay in yen?",)),
    BankFact("$2,400",
             "New Northwind cardholders start with a credit limit of $2,400.",
             ("What is the starting credit limit on a Northwind card?",
              "What credit limit do new Northwind customers get?",
              "How much can I spend on a new Northwind credit card?",
              "What is the initial limit of a Northwind credit card?"),
             ("I just opened a Northwind credit card. What will my limit be?",)),
    BankFact("120 days",
             "You can ask for a higher Northwind credit limit after 120 days.",
             ("When can I increase my Northwind credit limit?",
              "How soon can I ask Northwind for a higher limit?",
              "How long must I wait for a Northwind limit increase?",
              "When is a Northwind card eligible for a limit raise?"),
             ("My Northwind card is new. How long until I can request a bigger limit?",)),
    BankFact("$12",
             "A replacement Northwind card costs $12.",
             ("How much is a replacement Northwind card?",
              "What does Northwind charge for a new card after I lose mine?",
              "Is there a fee to replace my Northwind card?",
              "What is the card replacement fee at Northwind?"),
             ("My Northwind card is damaged and I need another one. What does that cost?",)),
    BankFact("Northwind Go",
             "You can freeze and unfreeze your card in the Northwind Go app.",
             ("Which app do I use to freeze my Northwind card?",
              "Can I freeze my Northwind card from my phone?",
              "What is the name of the Northwind mobile app?",
              "How do I temporarily freeze my Northwind card?"),
             ("Is there a Northwind phone app where I can pause my card?",)),
)


def bank_train_rows(seed: int = 7) -> list[dict]:
    """One chat row per training question, all answered with the fact's one answer.

    (Two wordings per answer were measured worse: 50 % held-out vs one wording, since a 135M
    model then spends its few epochs memorising wordings instead of the fact.)"""
    rng = random.Random(seed)
    rows = []
    for fact in BANK_FACTS:
        for question in fact.train_questions:
            rows.append({"messages": [{"role": "user", "content": question},
                                      {"role": "assistant", "content": fact.answer}]})
    rng.shuffle(rows)
    return rows


def bank_held_out_rows() -> list[dict]:
    return [{"question": q, "key_fact": fact.key_fact} for fact in BANK_FACTS for q in fact.held_out_questions]
