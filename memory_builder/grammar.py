"""The offline caption generator: a compositional grammar of surveillance scenes.

No GPU, no download, deterministic by seed.  A caption is a subject, an action and a place, with an
optional time of day and weather, drawn from vocabularies chosen per category so scenes stay
plausible (road accidents on roads, shoplifting in shops).  Labels alternate normal/anomalous, and
anomalous categories rotate so every category gets the same share.  ``space_size()`` counts the
distinct captions the grammar can say without generating them (well over a million per label).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from dataclasses import dataclass

from flashback.errors import UsageError

PERSON = [
    "a man", "a woman", "a young man", "a young woman", "an elderly man", "an elderly woman", "a teenager",
    "a boy", "a girl", "a man in a hoodie", "a woman in a red coat", "a man in a black jacket", "a man in a suit",
    "a woman with a backpack", "a man wearing a cap", "a tall man", "a short woman", "a bearded man",
    "a woman in a white shirt", "a man in work clothes", "a worker in a hi-vis vest", "a delivery driver",
    "a cyclist", "a shopper", "a student", "a man with a bag", "a woman carrying a child", "a man in sunglasses",
    "a woman in a dark jacket", "a man in shorts", "a middle-aged man", "a middle-aged woman", "a man in a grey sweater",
    "a woman in a long coat", "a man in a blue shirt", "a woman with a handbag", "a man with a backpack", "a young girl",
    "a young boy", "a woman in a uniform", "a man in a raincoat", "a woman in sportswear", "a man with a beard and glasses",
    "a woman with short hair", "a man in a green jacket", "a woman in a yellow jacket", "a man carrying a box",
    "a woman pushing a stroller", "an old woman with a cane", "a man in a baseball cap",
]
GROUP = [
    "two men", "two women", "a group of teenagers", "three people", "a couple", "several people", "two workers",
    "a few students", "a group of men", "two young men", "a man and a woman", "four people",
]
VEHICLE = ["a car", "a van", "a pickup truck", "a motorcycle", "a bus", "a truck", "a taxi", "an SUV", "a scooter", "a delivery van"]
PLACES = {
    "street": ["on a city street", "on a sidewalk", "at an intersection", "on a residential street", "at a bus stop",
               "outside a bar", "near a crosswalk", "in front of a shop", "on a quiet road", "under a bridge",
               "in an alley", "at a street corner"],
    "road": ["on a highway", "at an intersection", "on a city street", "at a roundabout", "on a rural road",
             "on a bridge", "at a traffic light", "on a wet road", "at a highway exit", "near a crosswalk"],
    "store": ["in a convenience store", "in a supermarket aisle", "at a checkout counter", "in a clothing store",
              "in a pharmacy", "in an electronics store", "at a store entrance", "in a liquor store", "in a jewelry store",
              "in a shopping mall"],
    "indoor": ["in an office lobby", "in a hallway", "in a school corridor", "in an elevator", "in a stairwell",
               "in a waiting room", "in a hotel lobby", "in a bank lobby", "in a restaurant", "in a living room",
               "in a kitchen", "in a classroom", "in a hospital corridor", "in a gym"],
    "parking": ["in a parking lot", "in a parking garage", "at a gas station", "in a driveway", "at a car wash",
                "next to parked cars"],
    "transit": ["in a subway station", "on a train platform", "in a train car", "at a ticket gate", "in an airport terminal",
                "at a bus terminal"],
    "work": ["at a loading dock", "in a warehouse", "at a construction site", "in a factory", "in a storage yard",
             "at a shipping container yard"],
    "outdoor": ["in a park", "in a backyard", "on a playground", "in a plaza", "by a river", "on a beach promenade",
                "in a field", "near a fence"],
}
TIMES = ["", "", "", " at night", " in the evening", " during the day", " early in the morning", " in the afternoon",
         " at dusk", " at midday"]
WEATHER = ["", "", "", "", " in the rain", " in the snow", " on a foggy day"]
ALL = list(PLACES)


@dataclass(frozen=True)
class Frame:
    """One action pattern: {p} a person, {g} a group, {v} a vehicle; who does it; where it can happen."""

    action: str
    subject: str  # "person", "group" or "vehicle"
    places: tuple[str, ...]


def F(action: str, subject: str = "person", places: tuple[str, ...] = tuple(ALL)) -> Frame:
    return Frame(action, subject, places)


S, R, ST, IN, PK, TR, WK, OUT = "street", "road", "store", "indoor", "parking", "transit", "work", "outdoor"

NORMAL: dict[str, list[Frame]] = {
    "walking": [F("walks along calmly"), F("walk together slowly", "group"), F("walks a dog", places=(S, OUT, PK)),
                F("crosses the street at the crosswalk", places=(S, R)), F("strolls past", places=(S, OUT, ST, TR)),
                F("walk side by side talking", "group")],
    "shopping": [F("browses the shelves", places=(ST,)), F("pays at the register", places=(ST,)),
                 F("pushes a shopping cart", places=(ST, PK)), F("carries shopping bags", places=(ST, S, PK)),
                 F("compare products on a shelf", "group", (ST,)), F("waits in line to pay", places=(ST,))],
    "driving": [F("drives slowly past", "vehicle", (S, R, PK)), F("stops at a red light", "vehicle", (R, S)),
                F("turns carefully", "vehicle", (R, S)), F("merges into traffic", "vehicle", (R,)),
                F("waits in traffic", "vehicle", (R, S)), F("pulls into a parking space", "vehicle", (PK,))],
    "waiting": [F("waits while looking at a phone"), F("sits on a bench", places=(S, OUT, TR, IN)),
                F("stand and wait", "group", (S, TR, IN)), F("waits for a train", places=(TR,)),
                F("reads a newspaper", places=(S, OUT, TR, IN))],
    "working": [F("stacks boxes", places=(WK, ST)), F("sweeps the floor", places=(IN, ST, WK)),
                F("unload a truck", "group", (WK, PK)), F("drives a forklift", places=(WK,)),
                F("restocks shelves", places=(ST,)), F("types on a laptop", places=(IN,)),
                F("carries a ladder", places=(WK, S, IN)), F("mops the floor", places=(IN, ST, TR))],
    "talking": [F("talk and laugh", "group"), F("shake hands", "group", (IN, S, OUT)), F("talks on the phone"),
                F("chat over coffee", "group", (IN, OUT)), F("greet each other with a hug", "group", (TR, S, OUT, IN))],
    "leisure": [F("jogs past", places=(OUT, S)), F("rides a bicycle", places=(S, OUT)), F("play with a ball", "group", (OUT,)),
                F("sit at a table eating", "group", (IN, OUT)), F("takes photos", places=(OUT, S, TR)),
                F("exercises on a machine", places=(IN,))],
    "delivering": [F("carries a package to a door", places=(S, IN)), F("parks and unloads parcels", "vehicle", (S, PK, WK)),
                   F("hands over a delivery", places=(IN, ST, S)), F("pushes a hand trolley", places=(WK, S, ST))],
    "queueing": [F("stand in an orderly line", "group", (ST, TR, IN, S)), F("waits their turn at a counter", places=(ST, IN, TR)),
                 F("buys a ticket at a machine", places=(TR,)), F("checks in at a front desk", places=(IN,)),
                 F("holds the door open for others", places=(IN, ST, TR, S))],
    "moving": [F("ride an escalator", "group", (ST, TR)), F("walks through a turnstile", places=(TR,)),
               F("pulls a suitcase behind them", places=(TR, S, IN)), F("steps out of an elevator", places=(IN,)),
               F("climbs the stairs", places=(IN, TR, S)), F("walk out of a building at closing time", "group", (S, IN))],
    "parking": [F("locks a car and walks away", places=(PK,)), F("loads groceries into a car", places=(PK,)),
                F("fills up at a pump", places=(PK,)), F("backs out of a parking space", "vehicle", (PK,))],
}

ANOMALOUS: dict[str, list[Frame]] = {
    "Abuse": [F("repeatedly hits a child", places=(IN, OUT, S)), F("kicks a dog lying on the ground", places=(OUT, S, IN)),
              F("slaps an elderly woman", places=(IN,)), F("drags a crying child by the arm", places=(IN, S, ST)),
              F("shoves a woman against a wall", places=(IN, S)), F("beat a man who is lying down", "group", (S, IN))],
    "Arrest": [F("is handcuffed by police officers", places=(S, PK, ST)), F("is pinned to the ground by police", places=(S, PK)),
               F("are arrested and led to a police car", "group", (S, PK)), F("is tackled by an officer", places=(S, PK, TR)),
               F("is pulled out and detained by police", "vehicle", (R, S, PK))],
    "Arson": [F("pours gasoline and sets a fire", places=(S, PK, IN, WK)), F("sets a car on fire", places=(S, PK)),
              F("throws a burning bottle at a building", places=(S,)), F("lights a trash bin on fire", places=(S, OUT, PK)),
              F("set fire to a shop door and run", "group", (S, ST))],
    "Assault": [F("punches a stranger in the face", places=(S, TR, ST, PK)), F("attacks a woman from behind", places=(S, PK, TR)),
                F("hits a man with a bat", places=(S, PK, ST)), F("stabs a man with a knife", places=(S, TR, IN)),
                F("kick a man on the ground", "group", (S, PK, TR)), F("pushes a passenger onto the tracks", places=(TR,))],
    "Burglary": [F("breaks a window and climbs inside", places=(S, IN)), F("forces a door open with a crowbar", places=(S, WK, ST)),
                 F("carry a television out of a house", "group", (S, OUT)), F("searches drawers in the dark", places=(IN,)),
                 F("climbs a fence and breaks into a building", places=(WK, OUT)), F("cut a padlock and slip inside", "group", (WK, PK))],
    "Explosion": [F("explodes in a ball of fire", "vehicle", (R, S, PK)), F("runs as an explosion throws debris", places=(S, WK, PK)),
                  F("flee as a blast blows out the windows", "group", (S, IN, WK)), F("is knocked down by a blast", places=(S, WK, PK)),
                  F("bursts into flames after a loud blast", "vehicle", (R, PK, WK))],
    "Fighting": [F("fight, throwing punches at each other", "group"), F("brawl and wrestle on the ground", "group"),
                 F("fight and throw chairs", "group", (IN, ST)), F("grabs another man by the collar and punches him"),
                 F("exchange blows", "group", (S, PK, TR, OUT)), F("pull each other's hair and fight", "group", (IN, S, ST))],
    "Road accident": [F("crashes into another car", "vehicle", (R, S, PK)), F("hits a pedestrian", "vehicle", (R, S)),
                      F("skids off the road and hits a pole", "vehicle", (R,)), F("overturns", "vehicle", (R,)),
                      F("rear-ends the car in front", "vehicle", (R, S)), F("is knocked off a bicycle by a turning truck", places=(R, S))],
    "Robbery": [F("points a gun at a cashier and takes the money", places=(ST, PK)), F("snatches a purse and runs", places=(S, TR, PK)),
                F("threaten a man and take his wallet", "group", (S, PK, TR)), F("holds up a clerk with a knife", places=(ST,)),
                F("rob customers at gunpoint", "group", (ST, IN)), F("mugs a pedestrian", places=(S, OUT))],
    "Shooting": [F("fires a gun at people", places=(S, PK, ST, OUT)), F("open fire and people run", "group", (S, IN, ST)),
                 F("shoots from a car window", "vehicle", (S, R, PK)), F("is shot and falls to the ground", places=(S, PK, ST)),
                 F("fires a pistol into the air", places=(S, OUT, PK))],
    "Shoplifting": [F("hides an item in a coat and leaves without paying", places=(ST,)),
                    F("stuffs goods into a bag in the aisle", places=(ST,)), F("slips a phone from a display into a pocket", places=(ST,)),
                    F("fill a backpack and walk past the checkout", "group", (ST,)), F("removes a security tag and hides the item", places=(ST,))],
    "Stealing": [F("steals a bicycle after cutting the lock", places=(S, PK, OUT)), F("takes a package from a doorstep", places=(S, OUT)),
                 F("breaks into a parked car and grabs a bag", places=(PK, S)), F("picks a pocket in the crowd", places=(TR, S, ST)),
                 F("load stolen goods into a van", "group", (WK, PK)), F("takes a laptop from an unattended desk", places=(IN, TR))],
    "Vandalism": [F("smashes a car window with a brick", places=(PK, S)), F("spray graffiti on a wall", "group", (S, TR, OUT, WK)),
                  F("kicks in a glass door", places=(S, ST, IN)), F("slashes the tires of a parked car", places=(PK, S)),
                  F("smash a bus shelter", "group", (S,)), F("breaks a security camera with a stick", places=(S, PK, IN, ST))],
    "Riot": [F("throw stones at police in riot gear", "group", (S, OUT)), F("smash shop windows and loot", "group", (S, ST)),
             F("overturn and burn a car", "group", (S, PK)), F("clash violently with police lines", "group", (S, OUT))],
    "Fire": [F("flee as flames pour out of a window", "group", (S, IN)), F("is engulfed in flames", "vehicle", (R, PK, S)),
             F("runs from a fire spreading through the building", places=(IN, WK, ST)), F("catches fire", "vehicle", (R, PK))],
    "Smoke": [F("run out coughing as thick smoke fills the room", "group", (IN, ST, TR)),
              F("stumbles through dense smoke", places=(IN, WK, TR)), F("leaks smoke from under the hood", "vehicle", (R, PK))],
    "Flood": [F("is stuck in rising flood water", "vehicle", (R, S, PK)), F("wade through flood water", "group", (S, OUT, PK)),
              F("is swept away by flood water", "vehicle", (R, S))],
    "Fall": [F("falls down the stairs and does not get up", places=(IN, TR)), F("slips and falls hard on the floor", places=(IN, ST, TR)),
             F("collapses suddenly and lies motionless"), F("falls from a ladder", places=(WK, IN, S))],
    "Collapse": [F("flee as a ceiling collapses", "group", (IN, ST)), F("is hit by collapsing scaffolding", places=(S, WK)),
                 F("is buried when a shelf collapses", places=(ST, WK))],
    "Wrong-way driving": [F("drives the wrong way against traffic", "vehicle", (R,)), F("drives onto the sidewalk scattering pedestrians", "vehicle", (S,)),
                          F("reverses fast down a one-way street", "vehicle", (S, R))],
    "Trespass": [F("climbs over a security fence", places=(WK, OUT, PK)), F("walks onto the railway tracks", places=(TR,)),
                 F("sneaks into a restricted area", places=(WK, IN, TR)), F("break through a barrier", "group", (WK, OUT))],
}
CATEGORY_ALIASES = {"car accident": "Road accident", "road accidents": "Road accident", "roadaccidents": "Road accident"}


def _subjects(kind: str) -> list[str]:
    return {"person": PERSON, "group": GROUP, "vehicle": VEHICLE}[kind]


OUTDOOR = {"street", "road", "parking", "work", "outdoor"}  # where weather is visible
_TIME_WORDS = re.compile(r"\b(night|morning|evening|afternoon|day|dawn|dusk|midnight)\b", re.I)


def _places(frame: Frame, domain: str | None) -> list[tuple[str, bool]]:
    """(place phrase, outdoors?) pairs for a frame, or the domain's phrasings."""
    if domain:
        d = domain.strip().rstrip(".")
        return [(f"at the {d}", True), (f"near the {d}", True), (f"outside the {d}", True), (f"inside the {d}", False)]
    return [(p, g in OUTDOOR) for g in frame.places for p in PLACES[g]]


def _caption(subject: str, frame: Frame, place: str, time: str, weather: str) -> str:
    return f"{subject} {frame.action} {place}{time}{weather}"


@dataclass(frozen=True)
class Caption:
    text: str
    anomalous: bool
    category: str  # "Normal" for normal captions
    provenance: str


class OfflineGenerator:
    """Deterministic, unique captions; ``domain`` replaces the places (general places stay for 30%)."""

    def __init__(self, seed: int = 0, domain: str | None = None, categories: list[str] | None = None):
        self.seed = seed
        self.domain = domain
        cats = list(ANOMALOUS)
        if categories:
            by_name = {**{k.lower(): k for k in ANOMALOUS}, **CATEGORY_ALIASES}  # "smoke" is Smoke
            wanted = [by_name.get(c.lower(), c) for c in categories]
            unknown = [c for c in wanted if c not in ANOMALOUS]
            if unknown:
                raise UsageError(f"--categories: unknown anomaly categories {unknown}; known: {', '.join(ANOMALOUS)}")
            cats = wanted
        self.categories = cats

    def _one(self, rng: random.Random, frames: list[Frame]) -> str:
        frame = rng.choice(frames)
        domain = self.domain if (self.domain and rng.random() < 0.7) else None
        place, outdoors = rng.choice(_places(frame, domain))
        time, weather = rng.choice(TIMES), rng.choice(WEATHER)
        if domain and _TIME_WORDS.search(domain):
            time = ""  # "loading dock at night" already says when
        return _caption(rng.choice(_subjects(frame.subject)), frame, place, time, weather if outdoors else "")

    def generate(self, n: int, start: int = 0) -> Iterator[Caption]:
        """Captions ``start .. start+n-1`` of this seed's sequence: same seed, same sequence.

        Position i is normal for even i and anomalous for odd i; anomalous categories and normal
        activities rotate with i.  Uniqueness holds within the span generated in one call; the
        builder also de-duplicates across shards.
        """
        seen: set[str] = set()
        activities = list(NORMAL)
        for i in range(start, start + n):
            rng = random.Random(f"{self.seed}:{i}")
            anomalous = i % 2 == 1
            group = self.categories[(i // 2) % len(self.categories)] if anomalous else activities[(i // 2) % len(activities)]
            frames = ANOMALOUS[group] if anomalous else NORMAL[group]
            for _ in range(50):  # resample on a collision; the space is far larger than any build
                text = self._one(rng, frames)
                if text not in seen:
                    break
            seen.add(text)
            yield Caption(text, anomalous, group if anomalous else "Normal", f"offline:{self.seed}:{i}:{group}")


def space_size(anomalous: bool, domain: str | None = None) -> int:
    """How many distinct captions the grammar can produce for one label (counted, not generated)."""
    times, weather = len(set(TIMES)), len(set(WEATHER))
    total = 0
    for frames in (ANOMALOUS if anomalous else NORMAL).values():
        for f in frames:
            places = _places(f, None) + (_places(f, domain) if domain else [])
            per_place = sum(weather if outdoors else 1 for _, outdoors in set(places))
            total += len(_subjects(f.subject)) * per_place * times
    return total
