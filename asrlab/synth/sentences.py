"""Plain English sentences for synthetic speech corpora, and a reader for user text files.

`generate_sentences(n, seed)` draws n distinct sentences from a grammar written for this
project: statements, questions and instructions over a vocabulary of about a thousand
common words (nouns grouped by kind so that verbs meet sensible objects: people eat food
and wear clothes, they do not eat umbrellas). Words repeat across sentences on purpose, so
a character model trained on a thousand sentences meets mostly familiar words in new
combinations at test time. Output is deterministic for a given seed and generator version.

Every sentence uses the transcript alphabet of the toolkit: lowercase a-z, space and the
apostrophe ("don't", "anna's", "seven o'clock"); numbers are spelled out as words.

`load_text_file(path)` reads a user's own sentences (one a line, or running prose split on
sentence punctuation), normalizes them to the same alphabet (asrlab.data.text.SENTENCE_TEXT, a
TextNormalizer: numbers, money and times read aloud), and reports what it dropped.
"""

from __future__ import annotations

import logging
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from asrlab.data.numbers import number_to_words, ordinal_words  # re-exported in __all__
from asrlab.data.text import SENTENCE_TEXT

__all__ = ["GENERATOR_VERSION", "ALPHABET", "generate_sentences",
           "number_to_words", "ordinal_words", "load_text_file", "read_text_file",
           "TextFileReport"]

log = logging.getLogger(__name__)

#: Bump when the grammar or word lists change: the same seed then gives different sentences.
GENERATOR_VERSION = "sentences-1"
#: Characters a normalized sentence may contain.
ALPHABET = frozenset("abcdefghijklmnopqrstuvwxyz' ")
MIN_WORDS, MAX_WORDS = 4, 14


# --------------------------------------------------------------------------- word forms

_DOUBLE_FINAL = set("stop drop plan shop run swim sit cut put get begin forget hit chat jog hug "
                    "skip clap grab rub dig win set let quit".split())


def plural(noun: str) -> str:
    """Regular English plural of the last word of a noun."""
    if re.search(r"(s|x|z|ch|sh)$", noun):
        return noun + "es"
    if re.search(r"[^aeiou]y$", noun):
        return noun[:-1] + "ies"
    return noun + "s"


def _third_person(verb: str) -> str:
    if verb == "have":
        return "has"
    return verb + "es" if verb.endswith("o") else plural(verb)  # goes, does; else as plurals


def _ing(verb: str) -> str:
    if verb.endswith("ie"):
        return verb[:-2] + "ying"
    if verb in _DOUBLE_FINAL:
        return verb + verb[-1] + "ing"
    if verb.endswith("e") and not verb.endswith(("ee", "ye", "oe")):
        return verb[:-1] + "ing"
    return verb + "ing"


def _regular_past(verb: str) -> str:
    if verb.endswith("e"):
        return verb + "d"
    if re.search(r"[^aeiou]y$", verb):
        return verb[:-1] + "ied"
    if verb in _DOUBLE_FINAL:
        return verb + verb[-1] + "ed"
    return verb + "ed"


def article(phrase: str) -> str:
    """'a' or 'an' for the phrase that follows."""
    word = phrase.split()[0]
    if word.startswith(("hour", "honest")):
        return "an"
    if word.startswith(("uni", "use", "usu", "one", "eu")):
        return "a"
    return "an" if word[0] in "aeiou" else "a"


@dataclass(frozen=True)
class Noun:
    sg: str
    pl: str
    kind: str
    mass: bool = False  # uncountable: "some bread", never "a bread"


@dataclass(frozen=True)
class Verb:
    base: str
    past: str
    pp: str
    tail: str = ""  # particle or preposition: "look for", "pick up"
    objs: tuple[str, ...] = ()  # noun kinds it takes as object
    animal_ok: bool = False  # an animal may be its subject

    def form(self, word: str) -> str:
        """A conjugated form with the verb's tail: form(past) of 'look for' -> 'looked for'."""
        return f"{word} {self.tail}" if self.tail else word

    @property
    def third(self) -> str:
        return _third_person(self.base)

    @property
    def ing(self) -> str:
        return _ing(self.base)


def _nouns(kind: str, spec: str, mass: bool = False) -> list[Noun]:
    """Parse 'cat mouse:mice post_office': ':' gives an irregular plural, '_' a space."""
    out = []
    for item in spec.split():
        sg, _, pl = item.partition(":")
        sg = sg.replace("_", " ")
        pl = pl.replace("_", " ") if pl else (sg if mass else plural(sg))
        out.append(Noun(sg, pl, kind, mass))
    return out


def _verbs(spec: str, objs: str = "", animal_ok: bool = False) -> list[Verb]:
    """Parse 'eat/ate/eaten look_for': '/' gives irregular past and participle, '_' a tail."""
    out = []
    for item in spec.split():
        forms, _, tail = item.partition("_")
        base, *irregular = forms.split("/")
        past = irregular[0] if irregular else _regular_past(base)
        pp = irregular[1] if len(irregular) > 1 else past
        out.append(Verb(base, past, pp, tail.replace("_", " "), tuple(objs.split()), animal_ok))
    return out


# --------------------------------------------------------------------------- lexicon

NAMES = ("anna ben carla david emma frank grace henry jack kate leo lucy mark nina oscar paul "
         "peter rose sam sarah tom maria james linda").split()
PEOPLE = _nouns("person", "teacher doctor farmer driver student nurse baker child:children boy "
                "girl man:men woman:women friend neighbor manager pilot painter singer writer "
                "artist cook waiter guest visitor tourist customer engineer dentist mechanic "
                "gardener librarian stranger player coach captain baby")
KIN = _nouns("person", "brother sister mother father uncle aunt cousin grandmother grandfather "
             "son daughter wife husband friend neighbor boss")
ANIMALS = _nouns("animal", "dog cat horse bird cow sheep:sheep rabbit duck fox mouse:mice "
                 "fish:fish goat pig bear owl frog puppy kitten")
FOODS = _nouns("food", "apple banana orange egg sandwich cookie potato:potatoes tomato:tomatoes "
               "carrot onion lemon pie cake pear peach pizza muffin strawberry grape")
FOODS_MASS = _nouns("food", "bread rice soup cheese meat chicken butter sugar salt honey pasta "
                    "salad chocolate jam fruit", mass=True)
DRINKS = _nouns("drink", "milk tea coffee juice water lemonade", mass=True)
THINGS = _nouns("thing", "key bag box hat cup plate bowl glass bottle lamp phone pen pencil "
                "ticket ball umbrella basket camera radio clock picture watch wallet ring gift "
                "blanket pillow towel knife:knives spoon fork mirror candle brush guitar "
                "notebook backpack suitcase chair computer toy kite jar")
READING = _nouns("reading", "book letter map newspaper magazine note recipe list menu report "
                 "story poem message")
CLOTHES = _nouns("clothes", "hat coat shirt jacket scarf dress sweater shoe boot glove")
VEHICLES = _nouns("vehicle", "car bus train bike boat truck plane taxi van")
OWNED_VEHICLES = [n for n in VEHICLES if n.sg in ("car", "bike", "boat", "truck", "van")]
OPENABLE = set("box bag door window bottle letter suitcase jar book umbrella gift".split())
FURNITURE = ("table desk bed sofa shelf chair counter").split()

# (name, preposition for "being there")
PLACES = [tuple(p.split(":")) for p in (
    "park:in market:at station:at library:at school:at garden:in kitchen:in beach:on "
    "river:by city:in village:in office:at hospital:at bank:at museum:at farm:on forest:in "
    "hotel:at shop:at bridge:on airport:at bakery:at cafe:at restaurant:at church:at "
    "post_office:at supermarket:at harbor:at lake:by hill:on mountain:on island:on "
    "theater:at zoo:at gym:at square:in living_room:in bedroom:in hall:in yard:in field:in "
    "castle:at stadium:at playground:at factory:at garage:in corner:on road:on").split()]
PLACES = [(name.replace("_", " "), prep) for name, prep in PLACES]
ROOMS = {"kitchen", "living room", "bedroom", "hall", "yard", "garage", "corner", "road"}
OPENING_HOURS = ("shop museum library bank bakery cafe restaurant supermarket zoo gym "
                 "post_office pharmacy").replace("_", " ").split()
LANDMARKS = "bridge church corner bank school station square hotel museum cafe".split()

ADJ_THING = ("old new small big heavy light empty full broken clean dirty cheap expensive nice "
             "strange round wooden soft warm cold wet dry lovely simple useful little").split()
COLORS = "red blue green yellow black white brown gray pink purple".split()
ADJ_READING = "old new short long interesting boring funny strange sad famous".split()
ADJ_VEHICLE = "old new small big clean dirty cheap expensive fast slow".split()
ADJ_FOOD = "fresh warm hot cold sweet salty delicious spicy ripe cheap".split()
ADJ_DRINK = "hot cold fresh warm sweet".split()
ADJ_PERSON = ("young old tall kind friendly new famous little quiet clever funny polite "
              "strong busy").split()
ADJ_STATE = ("tired happy sad busy angry hungry thirsty sick late early ready quiet nervous "
             "proud calm lucky cold worried bored excited sure sorry").split()
ADJ_ANIMAL = "small big old young friendly hungry lazy noisy brown black white little wild".split()
ADJ_PLACE = ("old new busy quiet small big crowded empty beautiful dark cold warm noisy famous "
             "nearest main").split()
MANNER = [w.replace("_", " ") for w in "quietly happily together again for_a_while all_day".split()]
MANNER_FOR = {  # verbs that take more specific adverbs
    "run": "quickly slowly fast again together every_morning", "swim": "slowly fast together",
    "sing": "loudly quietly beautifully together", "work": "hard late carefully all_day",
    "wait": "patiently quietly for_an_hour", "sleep": "well badly all_night for_an_hour",
    "study": "hard late carefully together", "play": "happily quietly together outside",
    "laugh": "loudly quietly again", "cook": "carefully together", "read": "quietly slowly aloud"}
INTENSIFIERS = [w.replace("_", " ") for w in "very really quite so too a_little".split()]
DAYS = "monday tuesday wednesday thursday friday saturday sunday".split()
SEASONS = "spring summer autumn winter".split()
MEALS = "breakfast lunch dinner".split()
WEATHER = "sunny cloudy windy rainy foggy cold warm hot".split()

# Transitive verbs by the kinds of object they take.
VERBS_TRANSITIVE = (
    _verbs("eat/ate/eaten", "food", animal_ok=True)
    + _verbs("cook cut/cut/cut taste order share", "food")
    + _verbs("drink/drank/drunk", "drink", animal_ok=True)
    + _verbs("pour", "drink")
    + _verbs("buy/bought sell/sold bring/brought need want", "food drink thing clothes reading")
    + _verbs("carry find/found lose/lost hold/held drop keep/kept take/took/taken move "
             "hide/hid/hidden borrow clean fix wash pick_up look_for forget/forgot/forgotten "
             "leave/left",
             "thing clothes reading")
    + _verbs("open close", "openable")
    + _verbs("read/read write/wrote/written send/sent", "reading")
    + _verbs("wear/wore/worn", "clothes")
    + _verbs("drive/drove/driven park wash clean fix", "owned_vehicle")
    + _verbs("catch/caught miss wait_for", "transport")
    + _verbs("see/saw/seen watch follow", "person animal", animal_ok=True)
    + _verbs("meet/met help call visit thank ask teach/taught remember wait_for talk_to "
             "listen_to", "person")
    + _verbs("feed/fed pet", "animal")
    + _verbs("like love", "food drink animal")
    + _verbs("paint", "thing")
    + _verbs("visit leave/left", "place")
)
VERBS_INTRANSITIVE = (
    _verbs("sleep/slept run/ran/run play swim/swam/swum rest sit/sat", animal_ok=True)
    + _verbs("laugh sing/sang/sung dance smile work wait study relax cook read/read/read")
)
VERBS_MOTION = _verbs("go/went/gone walk run/ran/run drive/drove/driven hurry travel return "
                      "come/came/come ride/rode/ridden")
VERBS_CLAUSE = _verbs("want try need plan hope decide forget/forgot/forgotten")
STATIVE = {"want", "need", "like", "love", "remember"}
VERBS_ACTION = [v for v in VERBS_TRANSITIVE if v.base not in STATIVE]
TRANSPORT = [n for n in VEHICLES if n.sg in ("bus", "train", "plane", "boat", "taxi")]


# --------------------------------------------------------------------------- phrase builders

@dataclass(frozen=True)
class Subject:
    text: str
    person: str  # "1s", "2", "3s", "1p", "3p"
    animal: bool = False

    @property
    def third_singular(self) -> bool:
        return self.person == "3s"

    def agree(self, aux: str) -> str:
        """The auxiliary as this subject takes it: 'do' -> 'does' after he, she, it."""
        return "does" if aux == "do" and self.third_singular else aux


_CONTRACTIONS = {
    "i am ": "i'm ", "you are ": "you're ", "we are ": "we're ", "they are ": "they're ",
    "he is ": "he's ", "she is ": "she's ", "it is ": "it's ", "i will ": "i'll ",
    "we will ": "we'll ", "you will ": "you'll ", "i have ": "i've ", "is not ": "isn't ",
    "are not ": "aren't ", "was not ": "wasn't ", "can not ": "can't ",
    "could not ": "couldn't ", "should not ": "shouldn't "}
PRONOUNS = [Subject("i", "1s"), Subject("you", "2"), Subject("he", "3s"), Subject("she", "3s"),
            Subject("we", "1p"), Subject("they", "3p")]
OBJECT_PRONOUNS = "me you him her us them".split()
POSSESSIVES = "my your his her our their".split()


class Grammar:
    """Sentence templates over the lexicon; every choice goes through one random.Random."""

    def __init__(self, rng: random.Random):
        self.r = rng

    # -- small helpers
    def pick(self, seq):
        return self.r.choice(seq)

    def chance(self, p: float) -> bool:
        return self.r.random() < p

    def opt(self, p: float, make: Callable[[], str]) -> str:
        return make() if self.chance(p) else ""

    def owner(self, the: bool = True) -> str:
        if self.chance(0.15):
            return self.pick(NAMES) + "'s"
        return self.pick(POSSESSIVES + (["the", "the"] if the else []))

    def number(self, low: int = 2, high: int = 12) -> str:
        return number_to_words(self.r.randint(low, high))

    # -- noun phrases
    def adjective_for(self, noun: Noun) -> str:
        table = {"food": ADJ_FOOD, "drink": ADJ_DRINK, "animal": ADJ_ANIMAL,
                 "person": ADJ_PERSON, "vehicle": ADJ_VEHICLE + COLORS, "reading": ADJ_READING}
        return self.pick(table.get(noun.kind, ADJ_THING + COLORS))

    def noun_phrase(self, noun: Noun, adj_p: float = 0.35, plural_p: float = 0.3) -> str:
        adj = self.adjective_for(noun) + " " if self.chance(adj_p) else ""
        if noun.mass:
            det = self.pick(["the", "some", "the", "my", "our", "more"])
            return f"{det} {adj}{noun.sg}"
        if self.chance(plural_p):
            det = self.pick(["the", "some", "my", "your", "these", "those", "our",
                             self.number(2, 9)])
            return f"{det} {adj}{noun.pl}"
        det = self.pick(self.singular_determiners(noun.kind))
        if det == "a":
            det = article(adj + noun.sg)
        return f"{det} {adj}{noun.sg}"

    def singular_determiners(self, kind: str) -> list[str]:
        if kind == "person":
            return ["the", "the", "a", "this", "that"]
        if kind == "food":
            return ["the", "the", "a", "this", "that", "your", "our"]
        if kind == "place":
            return ["the", "the", "the", "that"]
        return ["the", "the", "a", "my", "your", "this", "that", "her", "his", self.owner()]

    def person_phrase(self) -> str:
        roll = self.r.random()
        if roll < 0.25:
            return self.pick(NAMES)
        if roll < 0.55:
            return f"{self.pick(POSSESSIVES)} {self.pick(KIN).sg}"
        if roll < 0.65:
            group = self.pick(["friends", "neighbors", "parents", "cousins"])
            return f"{self.pick(POSSESSIVES)} {group}"
        return self.noun_phrase(self.pick(PEOPLE), adj_p=0.3, plural_p=0.2)

    def subject(self, animals: bool = False, question: bool = False) -> Subject:
        """A sentence subject; question=True avoids 'i' ('did i eat ...' sounds odd)."""
        if question:
            while (subj := self.subject(animals)).text == "i":
                pass
            return subj
        roll = self.r.random()
        if animals and roll < 0.3:
            noun = self.pick(ANIMALS)
            many = self.chance(0.3)
            text = self.noun_phrase(noun, plural_p=1.0 if many else 0.0)
            return Subject(text, "3p" if many else "3s", animal=True)
        if roll < 0.45:
            return self.pick(PRONOUNS)
        if roll < 0.6:
            return Subject(self.pick(NAMES), "3s")
        if roll < 0.65:
            a, b = self.r.sample(NAMES, 2)
            return Subject(f"{a} and {b}", "3p")
        if roll < 0.85:
            kin = self.pick(KIN)
            return Subject(f"{self.owner(the=False)} {kin.sg}", "3s")
        noun = self.pick(PEOPLE)
        many = self.chance(0.3)
        return Subject(self.noun_phrase(noun, adj_p=0.3, plural_p=1.0 if many else 0.0),
                       "3p" if many else "3s")

    def object_for(self, verb: Verb) -> str:
        kind = self.pick(verb.objs)
        if kind == "person":
            return self.pick(OBJECT_PRONOUNS) if self.chance(0.2) else self.person_phrase()
        if kind == "animal":
            return self.noun_phrase(self.pick(ANIMALS))
        if kind == "place":
            name, _ = self.pick(PLACES)
            return self.noun_phrase(Noun(name, plural(name), "place"), adj_p=0.2, plural_p=0.0)
        return self.noun_phrase(self.pick(self.nouns_of(kind)))

    @staticmethod
    def nouns_of(kind: str) -> list[Noun]:
        if kind == "openable":
            return [n for n in THINGS + READING if n.sg in OPENABLE]
        if kind == "transport":
            return TRANSPORT
        if kind == "owned_vehicle":
            return OWNED_VEHICLES
        return {"food": FOODS + FOODS_MASS, "drink": DRINKS, "thing": THINGS,
                "reading": READING, "clothes": CLOTHES, "vehicle": VEHICLES,
                "animal": ANIMALS}[kind]

    def place(self, motion: bool = False) -> str:
        if self.chance(0.08):
            return "home" if motion else "at home"
        name, prep = self.pick([p for p in PLACES if p[0] not in ROOMS] if motion else PLACES)
        adj = self.pick(ADJ_PLACE) + " " if self.chance(0.25) else ""
        det = "the" if self.chance(0.9) else "that"
        if motion:
            return f"to {det} {adj}{name}"
        if self.chance(0.2):
            prep = self.pick(["near", "behind", "next to", "outside", "across from"])
        return f"{prep} {det} {adj}{name}"

    def clock(self) -> str:
        hour = number_to_words(self.r.randint(1, 12))
        roll = self.r.random()
        if roll < 0.45:
            return f"{hour} o'clock"
        if roll < 0.6:
            return f"half past {hour}"
        if roll < 0.7:
            return f"a quarter to {hour}"
        return f"{hour} {self.pick(['fifteen', 'thirty', 'forty five', 'twenty', 'ten'])}"

    def time(self, tense: str) -> str:
        r = self.r
        options = {
            "past": ["yesterday", "last night", f"last {r.choice(DAYS + SEASONS)}", "this morning",
                     f"{self.number(2, 9)} {r.choice(['days', 'weeks', 'years'])} ago",
                     f"on {r.choice(DAYS)}", f"at {self.clock()}", f"after {r.choice(MEALS)}",
                     "last week", "earlier today"],
            "future": ["tomorrow", "tonight", f"next {r.choice(['week', 'month', 'year'] + DAYS)}",
                       f"on {r.choice(DAYS)}", f"at {self.clock()}", "later today",
                       f"in {self.number(2, 9)} {r.choice(['hours', 'days', 'weeks'])}",
                       f"before {r.choice(MEALS)}", "this weekend", "soon"],
            "present": ["every day", f"every {r.choice(['morning', 'evening', 'week'] + DAYS)}",
                        f"on {r.choice(DAYS)}s", "on weekends", f"after {r.choice(MEALS)}",
                        "in the evening", "at night", f"in the {r.choice(SEASONS)}",
                        f"twice a {r.choice(['day', 'week', 'month'])}"],
            "progressive": ["right now", "today", "at the moment", "this afternoon", "this week"],
            "perfect": ["today", "this week", "this year", "before", "twice", "this morning"],
        }
        return r.choice(options.get(tense, options["progressive"]))

    # -- verbs
    def verb_for(self, subj: Subject, verbs: list[Verb]) -> Verb:
        """One of `verbs` that `subj` can do (an animal: those marked animal_ok)."""
        return self.pick([v for v in verbs if v.animal_ok] if subj.animal else verbs)

    def be(self, subj: Subject, past: bool = False) -> str:
        if past:
            return "was" if subj.person in ("1s", "3s") else "were"
        return {"1s": "am", "3s": "is"}.get(subj.person, "are")

    def verb_phrase(self, subj: Subject, verb: Verb, tense: str, negative: bool = False) -> str:
        """Conjugate verb for subj; tense in present/past/future/progressive/perfect/modal."""
        third, no = subj.third_singular, " not" if negative else ""
        if tense == "present":
            if negative:
                return ("doesn't " if third else "don't ") + verb.form(verb.base)
            return verb.form(verb.third if third else verb.base)
        if tense == "past":
            return verb.form("didn't " + verb.base if negative else verb.past)
        if tense == "future":
            if self.chance(0.3):
                return f"{self.be(subj)}{no} going to {verb.form(verb.base)}"
            return ("won't " if negative else "will ") + verb.form(verb.base)
        if tense == "progressive":
            return f"{self.be(subj)}{no} {verb.form(verb.ing)}"
        if tense == "perfect":
            have = ("has" if third else "have") + ("n't" if negative else "")
            return f"{have} {verb.form(verb.pp)}"
        modal = self.pick(["can", "should", "must", "might", "could"])
        return f"{modal}{no} {verb.form(verb.base)}"

    def tense(self) -> str:
        return self.r.choices(["present", "past", "future", "progressive", "perfect", "modal"],
                              weights=[4, 5, 3, 2, 1, 1.5])[0]

    def contract(self, text: str) -> str:
        """Sometimes contract pronoun + auxiliary: 'i am' -> 'i'm'."""
        if not self.chance(0.35):
            return text
        for full, short in _CONTRACTIONS.items():
            if text.startswith(full) or f" {full}" in text:
                return (" " + text).replace(" " + full, " " + short, 1).strip()
        return text


# --------------------------------------------------------------------------- templates

def _statement_action(g: Grammar) -> str:
    subj = g.subject(animals=True)
    tense = g.tense()
    verb = g.verb_for(subj, VERBS_TRANSITIVE)
    negative = g.chance(0.15)
    vp = g.verb_phrase(subj, verb, tense, negative)
    place = "" if "place" in verb.objs else g.opt(0.35, g.place)
    when = g.opt(0.4, lambda: g.time(tense)) if tense != "modal" else ""
    return g.contract(f"{subj.text} {vp} {g.object_for(verb)} {place} {when}")


def _statement_intransitive(g: Grammar) -> str:
    subj = g.subject(animals=True)
    tense = g.tense()
    verb = g.verb_for(subj, VERBS_INTRANSITIVE)
    vp = g.verb_phrase(subj, verb, tense, g.chance(0.1))
    adverbs = [w.replace("_", " ") for w in MANNER_FOR.get(verb.base, "").split()] or MANNER
    adverb = g.opt(0.35, lambda: g.pick(adverbs))
    if verb.base == "swim":
        place = f"in the {g.pick(['lake', 'river', 'sea', 'pool'])}"
    else:
        place = g.place()
    return g.contract(f"{subj.text} {vp} {adverb} {place} {g.opt(0.5, lambda: g.time(tense))}")


def _statement_motion(g: Grammar) -> str:
    subj = g.subject()
    tense = g.pick(["past", "future", "progressive", "present"])
    verb = g.pick(VERBS_MOTION)
    vp = g.verb_phrase(subj, verb, tense)
    with_whom = g.opt(0.2, lambda: "with " + g.person_phrase())
    return g.contract(f"{subj.text} {vp} {g.place(motion=True)} {with_whom} {g.time(tense)}")


def _statement_there_is(g: Grammar) -> str:
    noun = g.pick(ANIMALS + THINGS + PEOPLE + VEHICLES + FOODS)
    count = g.r.randint(1, 40)
    past = g.chance(0.4)
    if count == 1:
        be, phrase = ("was" if past else "is"), f"{article(noun.sg)} {noun.sg}"
        if g.chance(0.4):
            adj = g.adjective_for(noun)
            phrase = f"{article(adj)} {adj} {noun.sg}"
    else:
        be, phrase = ("were" if past else "are"), f"{number_to_words(count)} {noun.pl}"
    when = g.opt(0.3, lambda: g.time("past") if past else "today")
    return f"there {be} {phrase} {g.place()} {when}"


def _statement_state(g: Grammar) -> str:
    subj = g.subject()
    past = g.chance(0.5)
    be = g.be(subj, past)
    intensity = g.opt(0.4, lambda: g.pick(INTENSIFIERS))
    reason = g.opt(0.4, lambda: g.pick([
        f"after {g.pick(MEALS + ['work', 'school', 'the game', 'the trip'])}",
        "today", "this morning", "last night" if past else "tonight",
        f"because {g.pick(['the', 'our', 'my'])} {g.pick(TRANSPORT).sg} was late"]))
    return g.contract(f"{subj.text} {be} {intensity} {g.pick(ADJ_STATE)} {reason}")


def _statement_thing_state(g: Grammar) -> str:
    noun = g.pick(FOODS_MASS + DRINKS + THINGS + CLOTHES + READING + VEHICLES)
    det = g.pick(["the", "this", "that", "my", "your", "our"])
    adj = g.adjective_for(noun)
    be = g.pick(["is", "was", "looks", "seems"])
    return f"{det} {noun.sg} {be} {g.opt(0.5, lambda: g.pick(INTENSIFIERS))} {adj}"


def _statement_location(g: Grammar) -> str:
    noun = g.pick(THINGS + CLOTHES + READING)
    many = g.chance(0.3)
    owner = g.pick(["the", "my", "your", "his", "her", "our", "their"])
    prep = g.pick(["on", "under", "next to", "behind", "in front of", "near"])
    where = g.pick(FURNITURE + ([] if prep in ("on", "under") else ["door", "window", "lamp"]))
    if g.chance(0.3):
        prep, where = "in", g.pick(["the kitchen", "the car", "the garage", "the drawer",
                                    "my bag", "the box", "the hall", "your pocket"])
    else:
        where = "the " + where
    be = ("were" if g.chance(0.3) else "are") if many else ("was" if g.chance(0.3) else "is")
    return f"{owner} {noun.pl if many else noun.sg} {be} {prep} {where}"


def _statement_intention(g: Grammar) -> str:
    subj = g.subject()
    head = g.pick(VERBS_CLAUSE)
    tense = g.pick(["present", "past"])
    verb = g.pick(VERBS_ACTION)
    clause = f"to {verb.form(verb.base)} {g.object_for(verb)}"
    when = g.opt(0.3, lambda: g.time("future")) if tense == "present" else ""
    return f"{subj.text} {g.verb_phrase(subj, head, tense)} {clause} {when}"


def _statement_because(g: Grammar) -> str:
    subj, other = g.subject(), g.subject()
    verb = g.pick(VERBS_TRANSITIVE)
    return (f"{subj.text} {verb.form(verb.past)} {g.object_for(verb)} "
            f"because {other.text} {g.be(other, past=True)} {g.pick(ADJ_STATE)}")


def _statement_two_actions(g: Grammar) -> str:
    subj = g.subject()
    tense = g.pick(["past", "future", "present"])
    first, second = g.r.sample(VERBS_TRANSITIVE, 2)
    vp1 = g.verb_phrase(subj, first, tense)
    vp2 = g.verb_phrase(subj, second, "past" if tense == "past" else "present")
    if tense == "future":
        vp2 = second.form(second.base)
    return f"{subj.text} {vp1} {g.object_for(first)} and {vp2} {g.object_for(second)}"


def _statement_count(g: Grammar) -> str:
    subj = g.subject()
    noun = g.pick(FOODS + THINGS + READING + CLOTHES)
    verb = g.pick([v for v in VERBS_TRANSITIVE if noun.kind in v.objs] or VERBS_TRANSITIVE[:1])
    tense = g.pick(["past", "present", "future", "perfect"])
    amount = number_to_words(g.pick([2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 15, 20, 24, 30, 50, 100]))
    vp = g.verb_phrase(subj, verb, tense)
    return f"{subj.text} {vp} {amount} {noun.pl} {g.opt(0.4, g.place)}"


def _statement_schedule(g: Grammar) -> str:
    roll = g.r.random()
    if roll < 0.4:
        thing, verbs = g.pick(TRANSPORT).sg, ["leaves", "arrives", "stops here"]
    elif roll < 0.75:
        thing, verbs = g.pick(OPENING_HOURS), ["opens", "closes"]
    else:
        thing, verbs = g.pick(["meeting", "class", "concert", "game", "party"]), ["starts", "ends"]
    thing, verb = f"the {thing}", g.pick(verbs)
    day = g.opt(0.3, lambda: g.pick([f"on {d}s" for d in DAYS] + ["every day", "tomorrow"]))
    return f"{thing} {verb} at {g.clock()} {day}"


def _statement_price(g: Grammar) -> str:
    noun = g.pick(FOODS + THINGS + CLOTHES + READING)
    many = g.chance(0.3)
    subject = f"{g.pick(['the', 'these', 'those'])} {noun.pl}" if many else \
        f"{g.pick(['the', 'this', 'that', 'a'])} {noun.sg}"
    if subject.startswith("a "):
        subject = f"{article(noun.sg)} {noun.sg}"
    verb = g.pick(["cost", "cost"] if many else ["costs", "cost"])
    cents = g.opt(0.4, lambda: f"and {g.pick(['fifty', 'twenty five', 'ninety nine', 'ten'])} "
                               "cents")
    return f"{subject} {verb} {number_to_words(g.r.randint(2, 99))} dollars {cents}"


def _statement_weather(g: Grammar) -> str:
    roll = g.r.random()
    when = g.opt(0.5, lambda: g.pick(["today", "this morning", "all day", "in the city"]))
    if roll < 0.5:
        be = g.pick(["it is", "it was", "it will be", "it's"])
        where = "" if when else g.opt(0.3, g.place)
        return f"{be} {g.opt(0.3, lambda: g.pick(INTENSIFIERS))} {g.pick(WEATHER)} {when} {where}"
    if roll < 0.8:
        return f"it {g.pick(['rained', 'snowed', 'is raining', 'will snow', 'might rain'])} {when}"
    quality = g.pick(["nice", "bad", "lovely", "terrible", "perfect"])
    return f"the weather {g.pick(['is', 'was', 'will be'])} {quality} {when}"


def _statement_age(g: Grammar) -> str:
    roll = g.r.random()
    if roll < 0.6:
        who = g.pick([f"{g.pick(POSSESSIVES)} {g.pick(KIN).sg}", g.pick(NAMES)])
        age = g.r.randint(2, 95)
    elif roll < 0.8:
        who, age = f"{g.pick(POSSESSIVES)} {g.pick(ANIMALS[:8]).sg}", g.r.randint(1, 15)
    else:
        who = f"the {g.pick(['house', 'church', 'bridge', 'school', 'castle', 'tree'])}"
        age = g.r.randint(20, 400)
    years = "year" if age == 1 else "years"
    return f"{who} {g.pick(['is', 'will be', 'was'])} {number_to_words(age)} {years} old"


def _statement_opinion(g: Grammar) -> str:
    lead = g.pick(["i think", "i know", "maybe", "i hope", "she said", "he told me",
                   "we heard that", "i'm sure", "they think", "it seems that"])
    return f"{lead} {g.pick([_statement_action, _statement_state, _statement_motion])(g)}"


def _question_yes_no(g: Grammar) -> str:
    subj = g.subject(question=True)
    aux = g.pick(["did", "do", "will", "can", "should", "could"])
    verb = g.pick(VERBS_TRANSITIVE if aux in ("did", "do", "will") else VERBS_ACTION)
    aux = subj.agree(aux)
    when = g.opt(0.35, lambda: g.time({"did": "past", "will": "future"}.get(aux, "present")))
    return (f"{aux} {subj.text} {verb.form(verb.base)} {g.object_for(verb)} "
            f"{g.opt(0.3, g.place)} {when}")


def _question_wh(g: Grammar) -> str:
    subj = g.subject(question=True)
    verb = g.pick(VERBS_TRANSITIVE)
    aux = subj.agree(g.pick(["did", "will", "do"]))
    wh = g.pick(["where", "when", "why", "how"])
    if g.chance(0.35):
        return f"what {aux} {subj.text} {verb.form(verb.base)} {g.place()}"
    return f"{wh} {aux} {subj.text} {verb.form(verb.base)} {g.object_for(verb)}"


def _question_be(g: Grammar) -> str:
    roll = g.r.random()
    if roll < 0.35:
        subj = g.subject()
        be = g.be(subj, g.chance(0.4))
        very = g.opt(0.4, lambda: g.pick(INTENSIFIERS))
        return f"{g.pick(['why', 'how', ''])} {be} {subj.text} {very} {g.pick(ADJ_STATE)}"
    if roll < 0.7:
        noun = g.pick(THINGS + CLOTHES + READING + VEHICLES)
        many = g.chance(0.3)
        owner = g.pick(["my", "your", "the", "our", "his", "her"])
        return f"where {'are' if many else 'is'} {owner} {noun.pl if many else noun.sg}"
    past = g.chance(0.4)
    when = g.pick(["yesterday", "last night", ""] if past else ["today", "now", "tonight", ""])
    return f"{'was' if past else 'is'} {g.pick(NAMES)} {g.place()} {when}"


def _question_how_many(g: Grammar) -> str:
    noun = g.pick(FOODS + THINGS + ANIMALS + PEOPLE + READING)
    if g.chance(0.5):
        return f"how many {noun.pl} are there {g.place()}"
    subj = g.subject(question=True)
    verbs = [v for v in VERBS_TRANSITIVE if noun.kind in v.objs] or _verbs("see/saw/seen")
    verb = g.pick(verbs)
    aux = subj.agree(g.pick(["did", "do", "will"]))
    return f"how many {noun.pl} {aux} {subj.text} {verb.form(verb.base)}"


def _question_misc(g: Grammar) -> str:
    roll = g.r.random()
    if roll < 0.25:
        transport = g.pick(TRANSPORT).sg
        which = g.pick(["next", "last", "first", ""])
        return f"what time does the {which} {transport} {g.pick(['leave', 'arrive'])}"
    if roll < 0.45:
        verb = g.pick(VERBS_TRANSITIVE)
        when = g.opt(0.4, lambda: g.time("past"))
        return f"who {verb.form(verb.past)} {g.object_for(verb)} {when}"
    if roll < 0.65:
        verb = g.pick(VERBS_TRANSITIVE)
        return f"have you {g.opt(0.3, lambda: 'ever')} {verb.form(verb.pp)} {g.object_for(verb)}"
    if roll < 0.85:
        return f"how long does it take to get {g.place(motion=True)}"
    food = g.pick(FOODS_MASS + DRINKS).sg
    return f"do you {g.pick(['like', 'want', 'need'])} {g.pick(['some', 'more'])} {food}"


def _instruction_action(g: Grammar) -> str:
    verb = g.pick(VERBS_TRANSITIVE)
    head = g.pick(["please", "", "", "don't", "remember to", "try to", "you should",
                   "don't forget to", "let's", "can you", "could you"])
    extra = g.opt(0.4, lambda: g.pick([g.place(), g.time("future"), g.pick(MANNER),
                                        f"before {g.pick(MEALS)}", "for me", "right now"]))
    return f"{head} {verb.form(verb.base)} {g.object_for(verb)} {extra}"


def _instruction_put(g: Grammar) -> str:
    noun = g.pick(THINGS + READING + CLOTHES + FOODS)
    verb = g.pick(["put", "leave", "place", "keep", "hide"])
    prep = g.pick(["on", "under", "next to", "behind", "near"])
    where = g.pick(FURNITURE + ["door", "window", "box", "basket"])
    thing = g.noun_phrase(noun, plural_p=0.3)
    return f"{g.opt(0.3, lambda: 'please')} {verb} {thing} {prep} the {where}"


def _instruction_directions(g: Grammar) -> str:
    roll = g.r.random()
    landmark = f"{g.opt(0.4, lambda: g.pick(ADJ_PLACE))} {g.pick(LANDMARKS)}"
    if roll < 0.4:
        return f"turn {g.pick(['left', 'right'])} at the {landmark}"
    if roll < 0.7:
        at = g.opt(0.4, lambda: "at the " + landmark)
        return f"walk {g.number(2, 6)} blocks and turn {g.pick(['left', 'right'])} {at}"
    way = g.pick(["straight", f"past the {landmark}",
                  f"across the {g.pick(['road', 'bridge', 'square'])}"])
    return f"go {way} and {g.pick(['stop', 'wait', 'look'])} {g.place()}"


def _instruction_move(g: Grammar) -> str:
    verb = g.pick(VERBS_MOTION)
    head = g.pick(["let's", "please", "don't", "we should", "you can", ""])
    return f"{head} {verb.base} {g.place(motion=True)} {g.opt(0.6, lambda: g.time('future'))}"


def _instruction_bring(g: Grammar) -> str:
    thing = g.noun_phrase(g.pick(THINGS + READING + FOODS + DRINKS + CLOTHES), plural_p=0.2)
    verb = g.pick(["bring", "give", "show", "send", "pass", "hand"])
    whom = g.pick(["me", "us", "him", "her", "them", g.pick(NAMES)])
    when = g.opt(0.3, lambda: g.time("future"))
    return f"{g.opt(0.4, lambda: 'please')} {verb} {whom} {thing} {when}"


TEMPLATES: list[tuple[Callable[[Grammar], str], float]] = [
    (_statement_action, 14), (_statement_intransitive, 5), (_statement_motion, 6),
    (_statement_there_is, 4), (_statement_state, 5), (_statement_thing_state, 3),
    (_statement_location, 3), (_statement_intention, 4), (_statement_because, 3),
    (_statement_two_actions, 3), (_statement_count, 3), (_statement_schedule, 2),
    (_statement_price, 2), (_statement_weather, 2), (_statement_age, 1.5),
    (_statement_opinion, 3), (_question_yes_no, 6), (_question_wh, 5), (_question_be, 3),
    (_question_how_many, 2), (_question_misc, 4), (_instruction_action, 7),
    (_instruction_put, 2), (_instruction_directions, 2), (_instruction_move, 3),
    (_instruction_bring, 2),
]


# --------------------------------------------------------------------------- generation

def _one_sentence(g: Grammar) -> str:
    funcs, weights = zip(*TEMPLATES)
    return " ".join(g.r.choices(funcs, weights=weights)[0](g).split())


def generate_sentences(n: int, seed: int) -> list[str]:
    """Return n distinct sentences of 4-14 words; the same (n, seed) always gives the same list.

    A prefix is stable: generate_sentences(10, s) == generate_sentences(20, s)[:10].
    Raises ValueError for n < 0 and RuntimeError if n distinct sentences cannot be found.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    g = Grammar(random.Random(f"asrlab-sentences/{GENERATOR_VERSION}/{seed}"))
    out: list[str] = []
    seen: set[str] = set()
    budget = 50 * n + 1000
    while len(out) < n:
        budget -= 1
        if budget < 0:
            raise RuntimeError(f"could only make {len(out)} distinct sentences, {n} requested")
        sentence = _one_sentence(g)
        if MIN_WORDS <= len(sentence.split()) <= MAX_WORDS and sentence not in seen:
            assert set(sentence) <= ALPHABET, sentence
            seen.add(sentence)
            out.append(sentence)
    return out


# --------------------------------------------------------------------------- user text files

@dataclass
class TextFileReport:
    """What load_text_file kept and what it dropped (reason -> count, with examples)."""

    path: Path
    mode: str  # "lines" (one sentence a line) or "prose" (split on sentence punctuation)
    segments: int = 0
    sentences: list[str] = field(default_factory=list)
    dropped: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def drop(self, reason: str, raw: str) -> None:
        self.dropped[reason] += 1
        shown = self.examples.setdefault(reason, [])
        if len(shown) < 3:
            shown.append(raw if len(raw) <= 80 else raw[:77] + "...")

    def summary(self) -> str:
        head = (f"{self.path}: read {self.segments} sentence(s) as {self.mode}, "
                f"kept {len(self.sentences)}, dropped {sum(self.dropped.values())}")
        lines = [head] + [f"  {count} {reason}, e.g. {self.examples[reason][0]!r}"
                          for reason, count in self.dropped.most_common()]
        return "\n".join(lines)


_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+")


def _detect_mode(lines: list[str]) -> str:
    """'prose' for hard-wrapped running text (many lines run on past their end and have a
    sentence break inside), else 'lines' (one sentence a line, punctuated or not)."""
    nonblank = [ln.strip() for ln in lines if ln.strip()]
    if not nonblank:
        return "lines"
    open_ended = sum(not re.search(r"[.!?][\"')\]]*$", ln) for ln in nonblank) / len(nonblank)
    mid_break = sum(bool(re.search(r"[.!?][\"')\]]*\s+\S", ln)) for ln in nonblank) / len(nonblank)
    return "prose" if open_ended >= 0.25 and mid_break >= 0.25 else "lines"


def _segments(text: str, mode: str) -> list[str]:
    if mode == "prose":
        paragraphs = re.split(r"\n\s*\n", text)
        chunks = [" ".join(p.split()) for p in paragraphs]
    else:
        chunks = text.splitlines()
    return [s.strip() for chunk in chunks for s in _SENTENCE_END.split(chunk) if s.strip()]


def read_text_file(path: str | Path, mode: str = "auto", min_words: int = 2,
                   max_words: int = 20) -> TextFileReport:
    """Read and normalize a user's sentences; see load_text_file. Returns the full report."""
    path = Path(path)
    if mode not in ("auto", "lines", "prose"):
        raise ValueError(f"mode must be 'auto', 'lines' or 'prose', got {mode!r}")
    if not path.is_file():
        raise FileNotFoundError(f"text file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text (bad byte at offset {e.start}); "
                         f"save it as UTF-8 and try again") from None
    report = TextFileReport(path, _detect_mode(text.splitlines()) if mode == "auto" else mode)
    seen: set[str] = set()
    for raw in _segments(text, report.mode):
        report.segments += 1
        sentence = SENTENCE_TEXT.normalize(raw)
        words = len(sentence.split())
        if not sentence:
            report.drop("empty after normalization (no letters or digits)", raw)
        elif words < min_words:
            report.drop(f"shorter than {min_words} words", raw)
        elif words > max_words:
            report.drop(f"longer than {max_words} words", raw)
        elif sentence in seen:
            report.drop("duplicate", raw)
        else:
            seen.add(sentence)
            report.sentences.append(sentence)
    return report


def load_text_file(path: str | Path, mode: str = "auto") -> list[str]:
    """Read sentences from a UTF-8 text file, normalized to the transcript alphabet.

    mode="lines" takes one sentence a line (a line with several sentences is split after
    . ! ?), "prose" joins each paragraph and splits it on sentence punctuation, "auto"
    picks prose for hard-wrapped running text. Each sentence is lowercased, numbers are
    spelled out, other characters dropped; sentences of 2-20 words are kept, duplicates
    dropped (first occurrence wins). Every drop is counted by reason and logged (warning);
    use read_text_file for the report itself.
    """
    report = read_text_file(path, mode)
    if report.dropped:
        log.warning("%s", report.summary())
    else:
        log.info("%s", report.summary())
    return report.sentences
