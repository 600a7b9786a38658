"""Synthetic children for benchmarks: realistic shape, entirely made up.

NHS numbers come from the 999 range reserved for test data and carry a valid Modulus 11 check
digit; postcodes are Leeds-shaped (LS1-LS29) but invented; names come from common UK lists.
"""
from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from typing import Any

from vocab.identifiers import nhs_number_check_digit
from vocab.systems import NHS_NUMBER

GIVEN_FEMALE = (
    "Olivia", "Amelia", "Isla", "Ava", "Ivy", "Freya", "Lily", "Florence", "Mia", "Willow",
    "Rosie", "Sophia", "Isabella", "Grace", "Daisy", "Sienna", "Poppy", "Elsie", "Emily",
    "Ella", "Evelyn", "Phoebe", "Sofia", "Evie", "Charlotte", "Harper", "Aisha", "Maryam",
    "Zara", "Layla", "Hannah", "Niamh", "Chloe", "Ruby", "Matilda", "Esme", "Alice", "Maisie",
)
GIVEN_MALE = (
    "Noah", "Oliver", "George", "Arthur", "Muhammad", "Leo", "Harry", "Oscar", "Archie",
    "Henry", "Theodore", "Freddie", "Jack", "Charlie", "Theo", "Alfie", "Jacob", "Thomas",
    "Finley", "Arlo", "William", "Lucas", "Roman", "Tommy", "Isaac", "Teddy", "Alexander",
    "Luca", "Edward", "James", "Joshua", "Albie", "Elijah", "Max", "Ibrahim", "Yusuf", "Kai",
)
# Common surnames in England and Wales, roughly by frequency (the weights are the rank order).
FAMILY = (
    "Smith", "Jones", "Williams", "Taylor", "Brown", "Davies", "Evans", "Wilson", "Thomas",
    "Johnson", "Roberts", "Robinson", "Thompson", "Wright", "Walker", "White", "Edwards",
    "Hughes", "Green", "Hall", "Lewis", "Harris", "Clarke", "Patel", "Jackson", "Wood",
    "Turner", "Martin", "Cooper", "Hill", "Ward", "Morris", "Moore", "Clark", "Lee", "King",
    "Baker", "Harrison", "Morgan", "Allen", "James", "Scott", "Phillips", "Watson", "Davis",
    "Parker", "Price", "Bennett", "Young", "Griffiths", "Mitchell", "Kelly", "Cook",
    "Carter", "Richardson", "Bailey", "Collins", "Bell", "Shaw", "Murphy", "Miller", "Cox",
    "Richards", "Khan", "Marshall", "Anderson", "Simpson", "Ellis", "Adams", "Singh",
    "Begum", "Wilkinson", "Foster", "Chapman", "Powell", "Webb", "Rogers", "Gray", "Mason",
    "Ali", "Hunt", "Hussain", "Campbell", "Matthews", "Owen", "Palmer", "Holmes", "Mills",
    "Barnes", "Knight", "Lloyd", "Butler", "Russell", "Barker", "Fisher", "Stevens",
    "Jenkins", "Murray", "Dixon", "Harvey", "Graham", "Pearson", "Ahmed", "Fletcher",
    "Walsh", "Kaur", "Gibson", "Howard", "Andrews", "Stewart", "Elliott", "Reynolds",
    "Saunders", "Payne", "Fox", "Ford", "Pearce", "Day", "Brooks", "West", "Lawrence",
    "Cole", "Atkinson", "Bradley", "Spencer", "Gill", "Dawson", "Ball", "Burton", "O'Brien",
    "Watts", "Rose", "Booth", "Perry", "Ryan", "Grant", "Wells", "Armstrong", "Francis",
    "Rees", "Hayes", "Hart", "Hudson", "Newman", "Barrett", "Kennedy", "Robertson",
)
STREETS = (
    "Chapel Street", "Church Lane", "Victoria Road", "Park Avenue", "Station Road",
    "Mill Lane", "Queen Street", "Moor Road", "Woodhouse Lane", "Kirkstall Road",
    "Harehills Lane", "Otley Road", "Roundhay Road", "Tong Road", "Dewsbury Road",
    "Beeston Road", "York Road", "Selby Road", "Scott Hall Road", "Street Lane",
)
POSTCODE_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"  # the inward-code letters in use


@dataclass(frozen=True)
class Child:
    """One synthetic child: the resource and the values benchmarks search by."""

    res_id: str
    nhs_number: str
    family: str
    resource: dict[str, Any]


def nhs_numbers(rng: random.Random, count: int) -> list[str]:
    """Return `count` distinct valid NHS numbers from the 999 test range."""
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < count:
        stem = "999" + f"{rng.randrange(1_000_000):06d}"
        check = nhs_number_check_digit(stem)
        if check is None:
            continue
        number = stem + str(check)
        if number not in seen and len(set(number)) > 1:
            seen.add(number)
            out.append(number)
    return out


def postcode(rng: random.Random) -> str:
    """Return an invented Leeds-shaped postcode such as 'LS6 2AB'."""
    return (f"LS{rng.randint(1, 29)} {rng.randint(1, 9)}"
            f"{rng.choice(POSTCODE_LETTERS)}{rng.choice(POSTCODE_LETTERS)}")


def children(count: int, seed: int = 20240601) -> list[Child]:
    """Return `count` synthetic children (Patient resources without id/meta), deterministic."""
    rng = random.Random(seed)
    weights = [1.0 / (rank + 5) for rank in range(len(FAMILY))]
    families = rng.choices(FAMILY, weights=weights, k=count)
    out: list[Child] = []
    for number, family in zip(nhs_numbers(rng, count), families):
        gender = rng.choice(("female", "male"))
        given_pool = GIVEN_FEMALE if gender == "female" else GIVEN_MALE
        given = [rng.choice(given_pool)]
        if rng.random() < 0.4:
            given.append(rng.choice(given_pool))
        birth = f"{rng.randint(2007, 2024)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        resource: dict[str, Any] = {
            "resourceType": "Patient",
            "identifier": [{"system": NHS_NUMBER, "value": number}],
            "active": True,
            "name": [{"use": "official", "family": family, "given": given}],
            "gender": gender,
            "birthDate": birth,
            "address": [{
                "use": "home",
                "line": [f"{rng.randint(1, 240)} {rng.choice(STREETS)}"],
                "city": "Leeds",
                "postalCode": postcode(rng),
                "country": "GB",
            }],
        }
        out.append(Child(str(uuid.UUID(int=rng.getrandbits(128), version=4)), number,
                         family, resource))
    return out
