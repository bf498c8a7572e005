"""The embedded default dataset: a seeded synthetic catalogue of movies and TV seasons, and users
whose interactions follow latent tastes, series order, momentum, novelty and the calendar.

Everything is drawn from one ``numpy.random.Generator(seed)``; the same config gives identical
frames. How the data is made (so that each model family has something real to learn):

- Items carry a latent vector over 16 genres and 12 themes. Genres are in the ``genres`` column;
  themes appear only in the description text, which is written from genre- and theme-specific
  vocabulary — a content model can place an item it has never seen in training.
- Some movies come in numbered sequel chains ("Title", "Title 2", ...), every TV show has one item
  per season ("Show — Season k"). Entries of a chain share genres, themes, studio/network, creator
  and core cast. An entry can only be watched after its predecessor (seasons in order).
- Users have demographics (age, gender, occupation, region); their taste over genres and themes is
  a sum of demographic effects plus individual noise.
- Each user's sequence: timestamps in sessions (evenings, more on weekends) over a ~3-year window;
  each next item is, with probability ``follow_prob``, the unseen successor of one of the last three
  items (binge the next season / the sequel), otherwise a draw from
  softmax(taste·latent + popularity + seasonal boost + novelty + momentum) over released, unseen
  items. Seasonal boosts: horror in October, holiday/family titles in December, romance in
  February, blockbusters in summer, TV on weekends. Momentum pulls towards the genres/themes of the
  last few items; novelty boosts items in the weeks after their release.
- Ratings (1–5) come from the user's affinity for the item, its quality and noise.

With ``item_text_path`` (TVmaze show dumps, ``data_contracts.sources.tvmaze``) the TV shows take
real show text after everything else is drawn, so the interactions are exactly those without it:
see ``generate_synthetic``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from datetime import date, datetime, timezone

import numpy as np
import pandas as pd

from ..schema import conform
from . import SourceError, Tables, files_checksum

__all__ = ["SyntheticConfig", "generate_synthetic", "GENRES", "THEMES", "GENERATOR_VERSION"]

log = logging.getLogger(__name__)

GENERATOR_VERSION = "1"
DAY = 86_400

GENRES = (
    "Action", "Adventure", "Animation", "Comedy", "Crime", "Documentary", "Drama", "Family",
    "Fantasy", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War",
)
G = {g: i for i, g in enumerate(GENRES)}
# How common each genre is as a primary genre (movies, TV).
_GENRE_WEIGHT_MOVIE = np.array([8, 5, 3, 9, 5, 2, 10, 3, 3, 5, 1, 3, 6, 4, 6, 2], float)
_GENRE_WEIGHT_TV = np.array([3, 2, 3, 9, 8, 4, 10, 3, 3, 2, 1, 5, 3, 4, 4, 1], float)

# genre -> (adjectives, nouns, keywords)
_GENRE_WORDS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "Action": (("explosive", "high-octane", "relentless", "adrenaline-fueled", "hard-hitting"),
               ("action thriller", "shoot-'em-up", "chase movie", "showdown"),
               ("car chases", "firefights", "explosions", "martial arts", "stunts", "a ticking bomb")),
    "Adventure": (("sweeping", "daring", "globe-trotting", "swashbuckling", "epic"),
                  ("adventure", "quest", "expedition", "odyssey"),
                  ("lost treasure", "uncharted islands", "ancient maps", "jungle ruins",
                   "a perilous voyage", "hidden temples")),
    "Animation": (("animated", "hand-drawn", "colorful", "whimsical", "stop-motion"),
                  ("cartoon", "animated feature", "animated tale", "toon"),
                  ("talking animals", "bright colors", "a brave little hero", "cartoon mischief",
                   "magical creatures", "a tiny robot sidekick")),
    "Comedy": (("hilarious", "screwball", "laugh-out-loud", "quirky", "irreverent"),
               ("comedy", "farce", "romp", "sitcom-style caper"),
               ("awkward dinners", "pranks", "slapstick", "witty banter", "misunderstandings",
                "running gags")),
    "Crime": (("gritty", "hard-boiled", "noir", "streetwise", "ruthless"),
              ("crime drama", "gangster saga", "police procedural", "mob story"),
              ("detectives", "the mob", "corrupt cops", "a drug cartel", "interrogations",
               "the city's underworld")),
    "Documentary": (("revealing", "in-depth", "observational", "award-winning", "investigative"),
                    ("documentary", "docuseries", "portrait", "exposé"),
                    ("archival footage", "interviews", "real events", "eyewitness accounts",
                     "a filmmaker's lens", "true stories")),
    "Drama": (("poignant", "intimate", "heartfelt", "searing", "quietly devastating"),
              ("drama", "character study", "family drama", "melodrama"),
              ("grief", "hard choices", "broken promises", "redemption", "long-buried secrets",
               "estranged siblings")),
    "Family": (("heartwarming", "kid-friendly", "wholesome", "feel-good", "all-ages"),
               ("family film", "family adventure", "children's story", "bedtime fable"),
               ("a loyal dog", "summer camp", "mischievous siblings", "grandparents",
                "a school play", "a backyard adventure")),
    "Fantasy": (("enchanted", "mythic", "spellbinding", "otherworldly", "sword-and-sorcery"),
                ("fantasy epic", "fairy tale", "legend", "saga"),
                ("dragons", "wizards", "a cursed kingdom", "elves", "an ancient prophecy",
                 "magic swords")),
    "Horror": (("terrifying", "blood-curdling", "haunting", "gruesome", "nightmarish"),
               ("horror film", "slasher", "ghost story", "creature feature"),
               ("a haunted house", "demons", "a masked killer", "possession",
                "screams in the dark", "the undead")),
    "Musical": (("toe-tapping", "show-stopping", "melodic", "dazzling", "rhythmic"),
                ("musical", "song-and-dance spectacle", "backstage story", "rock opera"),
                ("Broadway dreams", "big dance numbers", "a talent show", "a jazz club",
                 "a rock band", "auditions")),
    "Mystery": (("puzzling", "twisty", "enigmatic", "intriguing", "clever"),
                ("whodunit", "mystery", "detective story", "puzzle box"),
                ("clues", "a locked room", "an amateur sleuth", "red herrings", "a missing heir",
                 "a cryptic letter")),
    "Romance": (("swoon-worthy", "tender", "passionate", "bittersweet", "charming"),
                ("romance", "love story", "romantic comedy", "courtship tale"),
                ("a chance meeting", "a wedding", "love letters", "a summer fling",
                 "star-crossed lovers", "a first kiss")),
    "Sci-Fi": (("futuristic", "mind-bending", "dystopian", "cyberpunk", "cosmic"),
               ("science-fiction film", "space opera", "techno-thriller", "sci-fi epic"),
               ("robots", "time travel", "alien worlds", "starships", "clones",
                "a virtual reality")),
    "Thriller": (("tense", "nail-biting", "pulse-pounding", "paranoid", "claustrophobic"),
                 ("thriller", "psychological thriller", "cat-and-mouse game", "suspense tale"),
                 ("a stalker", "a hostage crisis", "double-crosses", "a race against time",
                  "a deadly secret", "surveillance")),
    "War": (("harrowing", "battle-scarred", "unflinching", "heroic", "grim"),
            ("war film", "combat drama", "wartime epic", "war story"),
            ("the front lines", "a platoon", "trenches", "a resistance cell", "air raids",
             "soldiers far from home")),
}

THEMES = (
    "space", "family", "revenge", "heist", "coming of age", "small town", "artificial intelligence",
    "holiday", "sports", "survival", "conspiracy", "first love",
)
T = {t: i for i, t in enumerate(THEMES)}
# theme -> (phrases, keywords)
_THEME_WORDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "space": (("a crew stranded far beyond Earth", "the first mission to a distant moon",
               "a mysterious signal from deep space"),
              ("astronauts", "orbit", "a space station", "the stars")),
    "family": (("three generations under one roof", "a father and daughter reconnecting",
                "siblings reunited after years apart"),
               ("home", "parents", "an inheritance", "a family reunion")),
    "revenge": (("a widow hunting the men who wronged her", "a betrayed soldier settling old scores",
                 "a long-planned act of vengeance"),
                ("vengeance", "betrayal", "retribution", "a vendetta")),
    "heist": (("a crew planning one last impossible job", "thieves targeting an unbreakable vault",
               "a con artist's elaborate scheme"),
              ("a vault", "a getaway car", "the big score", "a safecracker")),
    "coming of age": (("a teenager's last summer before college", "growing up in a restless town",
                       "a kid finding their own voice"),
                      ("high school", "first jobs", "graduation", "best friends")),
    "small town": (("secrets buried beneath a sleepy town", "a stranger arriving in a quiet village",
                    "a small town with a dark past"),
                   ("the sheriff", "a roadside diner", "local gossip", "a county fair")),
    "artificial intelligence": (("a machine that learns to feel",
                                 "an artificial mind slipping out of control",
                                 "a programmer bonding with her creation"),
                                ("algorithms", "androids", "a rogue AI", "neural networks")),
    "holiday": (("a family gathering for Christmas", "a snowed-in holiday reunion",
                 "a Santa who loses his magic"),
                ("Christmas", "snowfall", "presents", "holiday lights")),
    "sports": (("an underdog team chasing the championship", "a washed-up coach's final season",
                "an athlete's comeback"),
               ("the big game", "training montages", "a bitter rivalry", "the locker room")),
    "survival": (("a plane crash in the frozen wilderness", "castaways fighting to stay alive",
                  "hikers lost in the mountains"),
                 ("the wilderness", "a storm", "scarce supplies", "endurance")),
    "conspiracy": (("a journalist uncovering a government cover-up", "a whistleblower on the run",
                    "a secret society pulling the strings"),
                   ("cover-ups", "secret files", "power", "paranoia")),
    "first love": (("two strangers falling for each other", "a first love rekindled years later",
                    "an unlikely romance across class lines"),
                   ("longing", "heartbreak", "a first date", "devotion")),
}

_TITLE_ADJ = (
    "Silent", "Crimson", "Last", "Hidden", "Broken", "Golden", "Midnight", "Lost", "Wild", "Iron",
    "Hollow", "Burning", "Frozen", "Velvet", "Restless", "Electric", "Distant", "Shattered",
    "Secret", "Bright", "Savage", "Quiet", "Endless", "Falling", "Northern", "Painted", "Wicked",
    "Sacred", "Stolen", "Neon", "Bitter", "Scarlet", "Dark", "Little", "Brave", "Lucky",
)
_TITLE_NOUN = (
    "Harbor", "Kingdom", "Signal", "Garden", "Horizon", "River", "Empire", "Shadow", "Echo", "Crown",
    "Machine", "Summer", "Winter", "Frontier", "Witness", "Engine", "Island", "Orchard", "Storm",
    "Mirror", "Circuit", "Lantern", "Canyon", "Voyage", "Pact", "Legacy", "Promise", "Station",
    "Tide", "Ember", "Ghost", "Paradise", "Heart", "Road", "Hunter", "Dream",
)
_TITLE_PLACE = (
    "Avalon", "Brookfield", "Cedar Falls", "Dunmore", "Eastwick", "Fairhaven", "Glenrock",
    "Hartley", "Ivywood", "Juniper", "Kingsport", "Larkspur", "Marlow", "Northgate", "Oakridge",
    "Port Sable", "Quarry Hill", "Ravenwood", "Silverlake", "Thornbury",
)
_FIRST = (
    "Ava", "Ben", "Chloe", "Daniel", "Elena", "Felix", "Grace", "Hugo", "Iris", "Jonah", "Kara",
    "Leo", "Maya", "Nico", "Olivia", "Paul", "Quinn", "Rosa", "Sam", "Tara", "Umar", "Vera", "Will",
    "Xenia", "Yusuf", "Zoe", "Aaron", "Bianca", "Carlos", "Dana", "Emil", "Farah", "Gil", "Hana",
    "Ivan", "Jade", "Kenji", "Lina", "Marco", "Nadia",
)
_LAST = (
    "Adler", "Brooks", "Castillo", "Dawson", "Ellis", "Fontaine", "Garcia", "Hayes", "Ito", "Jensen",
    "Kowalski", "Lambert", "Moreau", "Nakamura", "Okafor", "Park", "Quintero", "Reyes", "Sato",
    "Thorne", "Ueda", "Vance", "Whitaker", "Xu", "Young", "Zhang", "Abbott", "Bishop", "Carver",
    "Delgado", "Everett", "Fischer", "Grant", "Holloway", "Iqbal", "Jovanovic", "Keller", "Lindqvist",
    "Mercer", "Novak",
)
_STUDIOS = (
    "Silverline Pictures", "Red Comet Studios", "Harborlight Films", "Paragon Features",
    "Blue Lantern Pictures", "Ironwood Studios", "Northstar Films", "Meridian Pictures",
    "Open Sky Entertainment", "Little Owl Animation",
)
_NETWORKS = (
    "Northlight TV", "Channel Meridian", "StreamNest", "Cobalt Network", "Orbit+", "Tallgrass TV",
    "Nightjar", "Beacon One", "Lumen Streaming", "Atlas Broadcasting",
)
OCCUPATIONS = (
    "student", "engineer", "teacher", "healthcare", "artist", "sales", "clerical", "executive",
    "scientist", "homemaker", "retired", "tradesperson",
)
REGIONS = (
    "US-Northeast", "US-South", "US-Midwest", "US-West", "Canada", "UK", "Germany", "Brazil",
)
GENDERS = ("M", "F", "X")


@dataclass(frozen=True)
class SyntheticConfig:
    """Size, seed and signal strengths of the synthetic dataset (defaults: ~1k users, ~750 items,
    ~40k interactions, generated in about a second)."""

    n_users: int = 1000
    n_movies: int = 400
    n_shows: int = 100  # each show contributes one item per season (1..max_seasons)
    seed: int = 0
    mean_history: float = 40.0  # mean of the lognormal sequence length (before clipping)
    min_history: int = 5
    max_history: int = 300
    start_date: str = "2021-01-01"  # first day of the interaction window (ISO)
    days: int = 1095  # length of the interaction window
    max_seasons: int = 6
    franchise_share: float = 0.3  # share of movies that belong to numbered sequel chains
    follow_prob: float = 0.85  # P(next item is the unseen successor of a recent item)
    taste_weight: float = 2.0  # logit weight of taste·latent
    popularity_weight: float = 1.0
    seasonal_weight: float = 1.0
    momentum_weight: float = 1.0  # pull towards the genres/themes of the last few items
    novelty_weight: float = 1.0  # boost in the weeks after an item's release

    def __post_init__(self) -> None:
        for field in ("n_users", "n_movies", "min_history", "max_history", "days", "max_seasons"):
            if getattr(self, field) < 1:
                raise SourceError(f"SyntheticConfig.{field} must be >= 1, got {getattr(self, field)}")
        if self.n_shows < 0:
            raise SourceError(f"SyntheticConfig.n_shows must be >= 0, got {self.n_shows}")
        if self.min_history > self.max_history:
            raise SourceError("SyntheticConfig.min_history must be <= max_history")
        if self.mean_history <= 0:
            raise SourceError("SyntheticConfig.mean_history must be > 0")
        for field in ("franchise_share", "follow_prob"):
            if not 0.0 <= getattr(self, field) <= 1.0:
                raise SourceError(f"SyntheticConfig.{field} must be in [0, 1]")
        try:
            date.fromisoformat(self.start_date)
        except ValueError:
            raise SourceError(f"SyntheticConfig.start_date is not an ISO date: {self.start_date!r}") from None

    def checksum(self) -> str:
        payload = json.dumps({"generator": GENERATOR_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()


# --------------------------------------------------------------------------------------------
# Catalogue


@dataclass
class _Catalogue:
    items: pd.DataFrame  # canonical item columns (0-based rows; item_id = row + 1)
    latent: np.ndarray  # [I, D] float32
    popularity: np.ndarray  # [I] log-popularity
    quality: np.ndarray  # [I]
    release_ts: np.ndarray  # [I] int64 unix seconds
    predecessor: np.ndarray  # [I] row of the previous chain entry, -1 if none
    successor: np.ndarray  # [I] row of the next chain entry, -1 if none
    is_tv: np.ndarray  # [I] bool
    genre_hot: np.ndarray  # [I, n_genres] bool
    theme_hot: np.ndarray  # [I, n_themes] bool
    blockbuster: np.ndarray  # [I] bool


def _ts(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp())


class _Names:
    """Unique titles and person names drawn from word pools."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.titles: set[str] = set()
        self.used_people: set[str] = set()  # names handed out so far

    def title(self) -> str:
        rng = self.rng
        for attempt in range(200):
            a, b = rng.choice(_TITLE_ADJ), rng.choice(_TITLE_NOUN)
            pattern = rng.integers(4)
            if pattern == 0:
                title = f"The {a} {b}"
            elif pattern == 1:
                title = f"{b} of {rng.choice(_TITLE_NOUN)}s"
            elif pattern == 2:
                title = f"{a} {b}"
            else:
                title = f"The {b} of {rng.choice(_TITLE_PLACE)}"
            if attempt > 50:
                title = f"{title} of {rng.choice(_TITLE_PLACE)}"
            if title not in self.titles:
                self.titles.add(title)
                return title
        n, letters = len(self.titles), ""
        while True:  # a title never ends in a digit: "<title> 2" is the sequel
            n, r = divmod(n, 26)
            letters = chr(65 + r) + letters
            if n == 0:
                break
        title = f"Untitled {letters}"
        self.titles.add(title)
        return title

    def people(self, n: int) -> list[str]:
        """``n`` unique person names: first x last pairs in random order, then with initials."""
        rng = self.rng
        out: list[str] = []
        pairs = len(_FIRST) * len(_LAST)
        round_ = 0
        while len(out) < n:
            for code in rng.permutation(pairs)[: n - len(out)]:
                first, last = _FIRST[code // len(_LAST)], _LAST[code % len(_LAST)]
                middle = "" if round_ == 0 else f" {chr(64 + (round_ - 1) % 26 + 1)}."
                suffix = "" if round_ <= 26 else f" {round_ // 27 + 1}"
                name = f"{first}{middle} {last}{suffix}"
                if name not in self.used_people:
                    self.used_people.add(name)
                    out.append(name)
            round_ += 1
        return out


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def _description(rng: np.random.Generator, genres: list[str], themes: list[str],
                 prefix: str = "") -> str:
    primary = genres[0]
    adj, noun, kws = _GENRE_WORDS[primary]
    phrases, theme_kws = _THEME_WORDS[themes[0]]
    first_adj = _pick(rng, adj)
    article = "An" if first_adj[0].lower() in "aeiou" else "A"
    sentences = [f"{article} {first_adj} {_pick(rng, noun)} about {_pick(rng, phrases)}."]
    second_theme = themes[1] if len(themes) > 1 else themes[0]
    if len(genres) > 1:
        other = genres[1]
        sentences.append(
            f"Part {_pick(rng, _GENRE_WORDS[other][1])}, part {_pick(rng, noun)}, it follows "
            f"{_pick(rng, _THEME_WORDS[second_theme][0])}."
        )
    else:
        sentences.append(f"It follows {_pick(rng, _THEME_WORDS[second_theme][0])}.")
    words = [_pick(rng, kws), _pick(rng, _GENRE_WORDS[genres[-1]][2]), _pick(rng, theme_kws)]
    if rng.random() < 0.15:  # a little off-profile noise
        words[1] = _pick(rng, _GENRE_WORDS[GENRES[int(rng.integers(len(GENRES)))]][2])
    if len(words) == len(set(words)):
        sentences.append(f"Expect {words[0]}, {words[1]} and {words[2]}.")
    else:
        sentences.append(f"Expect {words[0]} and {words[2]}.")
    return prefix + " ".join(sentences)


def _sample_genres(rng: np.random.Generator, weights: np.ndarray) -> list[str]:
    n = int(rng.choice([1, 2, 3], p=[0.35, 0.45, 0.2]))
    idx = rng.choice(len(GENRES), size=n, replace=False, p=weights / weights.sum())
    return [GENRES[i] for i in idx]


def _sample_themes(rng: np.random.Generator) -> list[str]:
    n = int(rng.choice([1, 2], p=[0.55, 0.45]))
    return [THEMES[i] for i in rng.choice(len(THEMES), size=n, replace=False)]


def _network(rng: np.random.Generator, pool: tuple[str, ...], specialty: np.ndarray, genre: str) -> str:
    """A studio/network, preferring one whose specialties include the primary genre."""
    fits = np.flatnonzero(specialty[:, G[genre]])
    if len(fits) and rng.random() < 0.6:
        return pool[int(rng.choice(fits))]
    return pool[int(rng.integers(len(pool)))]


def _build_catalogue(config: SyntheticConfig, rng: np.random.Generator) -> _Catalogue:
    names = _Names(rng)
    start = date.fromisoformat(config.start_date)
    start_ts = _ts(start)
    end_ts = start_ts + config.days * DAY
    last_release = end_ts - 30 * DAY
    history_span = 25 * 365 * DAY

    studio_specialty = np.zeros((len(_STUDIOS), len(GENRES)), bool)
    network_specialty = np.zeros((len(_NETWORKS), len(GENRES)), bool)
    for table in (studio_specialty, network_specialty):
        for row in table:
            row[rng.choice(len(GENRES), size=3, replace=False)] = True
    people = names.people(max(20, (config.n_movies + config.n_shows) // 3) + max(60, config.n_movies + config.n_shows))
    directors = people[: max(20, (config.n_movies + config.n_shows) // 3)]
    cast_pool = people[len(directors):]

    def release_day(n_entries: int, gap_days: float) -> list[int]:
        """Release timestamps of a chain: mostly before the window, ~20% inside it."""
        span = int((n_entries - 1) * gap_days * DAY)
        if rng.random() < 0.2:
            first = int(rng.integers(start_ts, max(start_ts + 1, last_release - span)))
        else:
            first = int(start_ts - history_span * rng.random() ** 2) - span
        out = [first]
        for _ in range(n_entries - 1):
            out.append(out[-1] + int(gap_days * DAY * rng.uniform(0.8, 1.2)))
        shift = max(0, out[-1] - last_release)
        return [t - shift for t in out]

    works: list[dict] = []
    # Movies: sequel chains first (until franchise_share of the movie budget), then standalones.
    budget = config.n_movies
    franchise_budget = int(round(config.franchise_share * config.n_movies))
    while franchise_budget >= 2 and budget >= 2:
        length = int(min(rng.integers(2, 5), franchise_budget, budget))
        works.append({"kind": "movie", "entries": length})
        franchise_budget -= length
        budget -= length
    works.extend({"kind": "movie", "entries": 1} for _ in range(budget))
    for _ in range(config.n_shows):
        works.append({"kind": "tv", "entries": int(rng.integers(1, config.max_seasons + 1))})
    order = rng.permutation(len(works))  # interleave movies, franchises and shows in the id space
    works = [works[i] for i in order]

    rows: list[dict] = []
    popularity: list[float] = []
    quality: list[float] = []
    predecessor: list[int] = []
    for work in works:
        tv = work["kind"] == "tv"
        genres = _sample_genres(rng, _GENRE_WEIGHT_TV if tv else _GENRE_WEIGHT_MOVIE)
        themes = _sample_themes(rng)
        base_title = names.title()
        creator = directors[int(rng.integers(len(directors)))]
        network = _network(rng, _NETWORKS if tv else _STUDIOS,
                           network_specialty if tv else studio_specialty, genres[0])
        core_cast = [cast_pool[i] for i in rng.choice(len(cast_pool), size=3 if tv else 2, replace=False)]
        pop = rng.normal(0.0, 1.0) + (0.3 if work["entries"] > 1 else 0.0)
        q = rng.normal(0.0, 0.5)
        n = work["entries"]
        releases = release_day(n, 365 if tv else rng.uniform(700, 1300))
        for k in range(n):
            extra = [cast_pool[i] for i in rng.choice(len(cast_pool), size=int(rng.integers(1, 4)), replace=False)]
            cast = list(dict.fromkeys(core_cast + extra))
            if tv:
                title = f"{base_title} — Season {k + 1}"
                prefix = f"{base_title}, season {k + 1}. " if k else ""
            else:
                title = base_title if k == 0 else f"{base_title} {k + 1}"
                prefix = f"The sequel to {base_title}{'' if k == 1 else f' {k}'}. " if k else ""
            if k and not tv and rng.random() < 0.3:
                creator = directors[int(rng.integers(len(directors)))]
            predecessor.append(len(rows) - 1 if k else -1)
            rows.append({
                "item_id": len(rows) + 1,
                "title": title,
                "kind": work["kind"],
                "genres": "|".join(genres),
                "description": _description(rng, genres, themes, prefix),
                "cast": "|".join(cast),
                "creator": creator,
                "network": network,
                "release_date": datetime.fromtimestamp(releases[k], timezone.utc).date().isoformat(),
                "seasons": n if tv else pd.NA,
                "_genres": genres,
                "_themes": themes,
                "_release_ts": releases[k],
            })
            popularity.append(pop - (0.4 * k if not tv else 0.25 * k) + rng.normal(0.0, 0.2))
            quality.append(q + rng.normal(0.0, 0.2))

    n_items = len(rows)
    genre_hot = np.zeros((n_items, len(GENRES)), bool)
    theme_hot = np.zeros((n_items, len(THEMES)), bool)
    latent = np.zeros((n_items, len(GENRES) + len(THEMES)), np.float32)
    for i, row in enumerate(rows):
        for j, g in enumerate(row["_genres"]):
            genre_hot[i, G[g]] = True
            latent[i, G[g]] = 1.0 if j == 0 else 0.6
        for t in row["_themes"]:
            theme_hot[i, T[t]] = True
            latent[i, len(GENRES) + T[t]] = 0.8
    latent /= np.linalg.norm(latent, axis=1, keepdims=True)
    predecessor_arr = np.asarray(predecessor, np.int64)
    successor = np.full(n_items, -1, np.int64)
    has_pred = predecessor_arr >= 0
    successor[predecessor_arr[has_pred]] = np.flatnonzero(has_pred)
    is_tv = np.array([r["kind"] == "tv" for r in rows])
    pop_arr = np.asarray(popularity, np.float32)
    big_genres = genre_hot[:, [G["Action"], G["Adventure"], G["Sci-Fi"], G["Animation"]]].any(axis=1)
    threshold = np.quantile(pop_arr[~is_tv], 0.75) if (~is_tv).any() else np.inf
    blockbuster = (~is_tv) & big_genres & (pop_arr >= threshold)
    items = pd.DataFrame(rows).drop(columns=["_genres", "_themes", "_release_ts"])
    return _Catalogue(
        items=items,
        latent=latent,
        popularity=pop_arr,
        quality=np.asarray(quality, np.float32),
        release_ts=np.array([r["_release_ts"] for r in rows], np.int64),
        predecessor=predecessor_arr,
        successor=successor,
        is_tv=is_tv,
        genre_hot=genre_hot,
        theme_hot=theme_hot,
        blockbuster=blockbuster,
    )


# --------------------------------------------------------------------------------------------
# Users


def _build_users(config: SyntheticConfig, rng: np.random.Generator, dim: int) -> tuple[pd.DataFrame, np.ndarray]:
    n = config.n_users
    age = np.clip(np.round(rng.normal(34, 13, n)), 13, 80).astype(np.int64)
    gender = rng.choice(len(GENDERS), size=n, p=[0.48, 0.48, 0.04])
    working = np.array([i for i, o in enumerate(OCCUPATIONS) if o not in ("student", "retired")])
    occupation = working[rng.integers(0, len(working), n)]
    occupation[(age < 23) & (rng.random(n) < 0.8)] = OCCUPATIONS.index("student")
    occupation[(age >= 65) & (rng.random(n) < 0.8)] = OCCUPATIONS.index("retired")
    region = rng.integers(0, len(REGIONS), n)
    age_bucket = np.digitize(age, [18, 25, 35, 50])  # 0..4

    # Demographic effects on taste: random per group, plus a few designed ones.
    age_effect = rng.normal(0, 0.6, (5, dim))
    age_effect[0, [G["Animation"], G["Family"]]] += 1.5
    age_effect[1, [G["Horror"], G["Comedy"], G["Sci-Fi"]]] += 0.8
    age_effect[4, [G["Drama"], G["War"], G["Documentary"]]] += 1.0
    age_effect[4, [G["Horror"], G["Animation"]]] -= 0.8
    gender_effect = rng.normal(0, 0.4, (len(GENDERS), dim))
    occupation_effect = rng.normal(0, 0.5, (len(OCCUPATIONS), dim))
    occupation_effect[OCCUPATIONS.index("scientist"), [G["Sci-Fi"], G["Documentary"]]] += 1.0
    occupation_effect[OCCUPATIONS.index("engineer"), len(GENRES) + T["artificial intelligence"]] += 1.0
    region_effect = rng.normal(0, 0.4, (len(REGIONS), dim))
    taste = (
        age_effect[age_bucket]
        + gender_effect[gender]
        + occupation_effect[occupation]
        + region_effect[region]
        + rng.normal(0, 0.9, (n, dim))
    ).astype(np.float32)
    users = pd.DataFrame({
        "user_id": np.arange(1, n + 1, dtype=np.int64),
        "age": age,
        "gender": np.array(GENDERS)[gender],
        "occupation": np.array(OCCUPATIONS)[occupation],
        "region": np.array(REGIONS)[region],
    })
    return users, taste


# --------------------------------------------------------------------------------------------
# Sequences


def _user_timestamps(rng: np.random.Generator, length: int, start_ts: int, end_ts: int) -> np.ndarray:
    """Strictly increasing event times in evening/weekend sessions, inside [start_ts, end_ts)."""
    days = (end_ts - start_ts) // DAY
    join = int(days * 0.85 * rng.random() ** 1.5)
    days_per_event = float(np.exp(rng.normal(np.log(6.0), 0.7)))
    span = int(min(days - join - 1, max(14.0, days_per_event * length)))
    # Sessions of 1-4 events (a per-user binge rate), 80-160 minutes apart within a session.
    sizes = np.minimum(1 + rng.poisson(rng.uniform(0.3, 2.0), length), 4)
    bounds = np.cumsum(sizes)
    n_sessions = int(np.searchsorted(bounds, length)) + 1
    session = np.searchsorted(bounds, np.arange(length), side="right")
    day = join + rng.integers(0, span + 1, n_sessions)
    # Move about half of the sessions to the following weekend (1970-01-01 was a Thursday).
    weekday = (start_ts // DAY + day + 3) % 7  # 0 = Monday
    to_weekend = (weekday < 5) & (rng.random(n_sessions) < 0.5)
    day = np.where(to_weekend, day + (5 - weekday) + rng.integers(0, 2, n_sessions), day)
    day = np.minimum(day, days - 1)
    weekend = ((start_ts // DAY + day + 3) % 7) >= 5
    hour = np.where(weekend, rng.uniform(11, 22, n_sessions), rng.uniform(18, 22.5, n_sessions))
    session_start = start_ts + day * DAY + (hour * 3600).astype(np.int64)
    gaps = rng.integers(80 * 60, 160 * 60, length)
    first = np.ones(length, bool)
    first[1:] = session[1:] != session[:-1]
    gaps[first] = 0
    elapsed = np.cumsum(gaps)
    within = elapsed - elapsed[np.maximum.accumulate(np.where(first, np.arange(length), 0))]
    ts = np.sort(session_start)[session] + within
    step = 60 * np.arange(length)
    ts = np.maximum.accumulate(ts - step) + step  # strictly increasing, >= 60 s apart
    return np.minimum(ts, end_ts - 1 - (length - 1 - np.arange(length)) * 60)


def _seasonal_table(config: SyntheticConfig, cat: _Catalogue) -> np.ndarray:
    """Logit boost [month 0..11, weekend 0/1, item]."""
    n_items = len(cat.popularity)
    boost = np.zeros((12, 2, n_items), np.float32)
    horror = cat.genre_hot[:, G["Horror"]]
    holiday = cat.theme_hot[:, T["holiday"]] | cat.genre_hot[:, G["Family"]]
    romance = cat.genre_hot[:, G["Romance"]] | cat.theme_hot[:, T["first love"]]
    boost[9, :, horror] += 1.5  # October
    boost[8, :, horror] += 0.4
    boost[11, :, cat.theme_hot[:, T["holiday"]]] += 2.0  # December
    boost[11, :, holiday] += 0.6
    boost[1, :, romance] += 0.8  # February
    for month in (5, 6, 7):  # summer blockbusters
        boost[month, :, cat.blockbuster] += 1.0
    boost[:, 1, cat.is_tv] += 0.7  # weekend binges
    return boost * config.seasonal_weight


_BLOCK = 64  # items per block of the two-level inverse-CDF sampler


def _sample_rows(weights: np.ndarray, uniform: np.ndarray) -> np.ndarray:
    """One index per row of ``weights`` [n, nb * _BLOCK] (non-negative, each row with a positive
    sum), drawn with probability proportional to the weight: pick a block by its sum, then an
    item inside it. ``uniform`` in (0, 1]."""
    n, width = weights.shape
    blocks = weights.reshape(n, width // _BLOCK, _BLOCK)
    cdf = np.cumsum(blocks.sum(axis=2), axis=1)
    draw = uniform.astype(np.float32) * cdf[:, -1]
    block = np.minimum((cdf < draw[:, None]).sum(axis=1), cdf.shape[1] - 1)
    rows = np.arange(n)
    rest = draw - np.where(block > 0, cdf[rows, np.maximum(block - 1, 0)], 0.0)
    inside = blocks[rows, block]
    position = (np.cumsum(inside, axis=1) < rest[:, None]).sum(axis=1)
    last_positive = _BLOCK - 1 - np.argmax(inside[:, ::-1] > 0, axis=1)  # guards rounding
    return block * _BLOCK + np.minimum(position, last_positive)


def _generate_sequences(config: SyntheticConfig, rng: np.random.Generator, cat: _Catalogue,
                        taste: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user row, item row, timestamp) arrays of every interaction, per user chronological.

    Per block of users, ``open_logits[u, i]`` holds the user's static logit (taste + popularity)
    for the items the user may pick now — released, unseen, and first of its chain or with its
    predecessor seen — and -inf for the others. It is updated incrementally: items are opened as
    the user's clock passes their release date or as their predecessor is watched, and closed when
    watched. Each step adds the time-dependent terms and samples one item per active user.
    """
    n_users, n_items = config.n_users, len(cat.popularity)
    width = -(-n_items // _BLOCK) * _BLOCK  # item axis padded to whole sampler blocks
    start_ts = _ts(date.fromisoformat(config.start_date))
    end_ts = start_ts + config.days * DAY
    sigma = 0.75
    mu = np.log(config.mean_history) - sigma**2 / 2
    lengths = np.clip(np.round(rng.lognormal(mu, sigma, n_users)), config.min_history, config.max_history)
    lengths = np.minimum(lengths, n_items).astype(np.int64)
    times = [_user_timestamps(rng, int(n), start_ts, end_ts) for n in lengths]

    seasonal = np.zeros((12, 2, width), np.float32)
    seasonal[:, :, :n_items] = _seasonal_table(config, cat)
    latent = cat.latent
    latent_t = np.zeros((latent.shape[1], width), np.float32)
    latent_t[:, :n_items] = latent.T
    affinity_all = taste @ latent.T  # [U, I]
    aff_mean, aff_std = float(affinity_all.mean()), float(affinity_all.std() + 1e-6)
    has_pred = cat.predecessor >= 0
    pred_safe = np.maximum(cat.predecessor, 0)
    by_release = np.argsort(cat.release_ts, kind="stable")
    release_sorted = cat.release_ts[by_release]
    tau = np.float32(45.0 * DAY)
    novelty = np.float32(config.novelty_weight * 1.5)
    momentum = np.float32(config.momentum_weight * 2.0)
    # Novelty only matters for items released shortly before or during the window.
    fresh = np.flatnonzero(cat.release_ts >= start_ts - 365 * DAY)
    fresh_release = cat.release_ts[fresh]

    users_out, items_out, ts_out = [], [], []
    block_users = 2048
    for lo in range(0, n_users, block_users):
        hi = min(n_users, lo + block_users)
        b = hi - lo
        blen = lengths[lo:hi].copy()
        lmax = int(blen.max())
        ts = np.zeros((b, lmax), np.int64)
        for r in range(b):
            ts[r, : blen[r]] = times[lo + r]
        dt = pd.to_datetime(ts.ravel(), unit="s")
        month = (dt.month.to_numpy() - 1).reshape(b, lmax)
        weekend = (dt.day_of_week.to_numpy() >= 5).reshape(b, lmax).astype(np.int64)
        base = np.full((b, width), -np.inf, np.float32)
        base[:, :n_items] = (config.taste_weight * (affinity_all[lo:hi] - aff_mean) / aff_std
                             + config.popularity_weight * cat.popularity[None, :])
        open_logits = np.full((b, width), -np.inf, np.float32)
        seen = np.zeros((b, n_items), bool)
        released = np.zeros((b, n_items), bool)
        released_upto = np.zeros(b, np.int64)  # per user: items by_release[:k] are released
        hist = np.full((b, lmax), -1, np.int64)
        recent = np.zeros((b, latent.shape[1]), np.float32)
        for s in range(lmax):
            rows = np.flatnonzero(blen > s)
            if len(rows) == 0:
                break
            t = ts[rows, s]
            # Open the items released since each user's previous step.
            upto = np.searchsorted(release_sorted, t, side="right")
            counts = upto - released_upto[rows]
            if counts.sum():
                user = np.repeat(rows, counts)
                offset = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
                item = by_release[np.repeat(released_upto[rows], counts) + offset]
                released[user, item] = True
                ok = ~has_pred[item] | seen[user, pred_safe[item]]
                open_logits[user[ok], item[ok]] = base[user[ok], item[ok]]
                released_upto[rows] = upto
            logits = open_logits[rows] + seasonal[month[rows, s], weekend[rows, s]]
            if len(fresh):
                age = (t[:, None] - fresh_release[None, :]).astype(np.float32)
                logits[:, fresh] += np.where(age >= 0, novelty * np.exp(-age / tau), np.float32(0.0))
            if s:
                logits += momentum * (recent[rows] @ latent_t)
            with np.errstate(invalid="ignore"):  # a row with nothing left is all -inf
                weights = np.exp(logits - logits.max(axis=1, keepdims=True))
            exhausted = ~(weights.sum(axis=1) > 0)
            uniform = 1.0 - rng.random(len(rows))  # (0, 1]
            choice = np.zeros(len(rows), np.int64)
            if (~exhausted).any():
                choice[~exhausted] = _sample_rows(weights[~exhausted], uniform[~exhausted])
            # Series order: continue a recently watched show/franchise with high probability.
            follow = np.full(len(rows), -1, np.int64)
            for back in range(3, 0, -1):  # most recent last, so it wins
                if s - back < 0:
                    continue
                prev = hist[rows, s - back]
                cand = np.where(prev >= 0, cat.successor[np.maximum(prev, 0)], -1)
                ok_rows = np.flatnonzero(cand >= 0)
                good = ~seen[rows[ok_rows], cand[ok_rows]] & released[rows[ok_rows], cand[ok_rows]]
                follow[ok_rows[good]] = cand[ok_rows[good]]
            use_follow = (follow >= 0) & (rng.random(len(rows)) < config.follow_prob)
            choice = np.where(use_follow, follow, choice)
            done = exhausted & ~use_follow
            if done.any():
                blen[rows[done]] = s
                rows, choice = rows[~done], choice[~done]
            seen[rows, choice] = True
            open_logits[rows, choice] = -np.inf
            nxt = cat.successor[choice]
            opens = nxt >= 0
            opens[opens] = released[rows[opens], nxt[opens]]
            open_logits[rows[opens], nxt[opens]] = base[rows[opens], nxt[opens]]
            hist[rows, s] = choice
            recent[rows] = 0.6 * recent[rows] + 0.4 * latent[choice]
        for r in range(b):
            n = int(blen[r])
            users_out.append(np.full(n, lo + r, np.int64))
            items_out.append(hist[r, :n])
            ts_out.append(ts[r, :n])
    return np.concatenate(users_out), np.concatenate(items_out), np.concatenate(ts_out)


def generate_synthetic(config: SyntheticConfig | None = None,
                       item_text_path: str | os.PathLike | None = None) -> Tables:
    """Generate the synthetic dataset for ``config`` (default ``SyntheticConfig()``).

    Returns canonical tables: interactions time-ordered (stable by user on equal timestamps), with
    each user's events strictly increasing in time and no repeated (user, item); items with
    ``item_id`` 1..n_items; users with ``user_id`` 1..n_users. ``checksum`` hashes the config and
    the generator version.

    ``item_text_path``: TVmaze show dumps (one file, a comma-separated list, or a folder; see
    ``tvmaze.tvmaze_files``). Each synthetic show, all of its season items, then takes the title,
    genres, network and description of one TVmaze show that has a summary (see
    ``_with_tvmaze_text``); interactions, users and every other item column are unchanged. Shows
    left over when there are more synthetic shows than usable TVmaze shows keep their synthetic
    text; their count is logged. The name becomes "synthetic+tvmaze" and the checksum also covers
    the dump files' bytes.
    """
    config = config or SyntheticConfig()
    rng = np.random.default_rng(config.seed)
    cat = _build_catalogue(config, rng)
    users, taste = _build_users(config, rng, cat.latent.shape[1])
    user_rows, item_rows, timestamps = _generate_sequences(config, rng, cat, taste)

    affinity = np.einsum("nd,nd->n", taste[user_rows], cat.latent[item_rows])
    z = (affinity - affinity.mean()) / (affinity.std() + 1e-6) if len(affinity) else affinity
    score = 3.4 + 0.8 * z + 0.8 * cat.quality[item_rows] + rng.normal(0.0, 0.6, len(z))
    rating = np.clip(np.round(score), 1, 5).astype(np.float32)

    interactions = pd.DataFrame({
        "user_id": user_rows + 1,
        "item_id": item_rows + 1,
        "rating": rating,
        "timestamp": timestamps,
    })
    order = np.lexsort((np.arange(len(interactions)), interactions["timestamp"].to_numpy()))
    interactions = interactions.iloc[order].reset_index(drop=True)
    source = f"synthetic(seed={config.seed})"
    items, name, checksum = cat.items, "synthetic", config.checksum()
    if item_text_path not in (None, ""):
        from .tvmaze import read_tvmaze

        text = read_tvmaze(item_text_path)
        items = _with_tvmaze_text(cat, text.shows, config.seed)
        name = "synthetic+tvmaze"
        files = files_checksum(("item_text", path) for path in text.files)
        checksum = hashlib.sha256(f"{checksum}\n{files}".encode()).hexdigest()
    return Tables(
        interactions=conform(interactions, "interactions", source),
        items=conform(items, "items", source),
        users=conform(users, "users", source),
        name=name,
        checksum=checksum,
    )


# --------------------------------------------------------------------------------------------
# Real TV show text


def _with_tvmaze_text(cat: _Catalogue, shows: pd.DataFrame, seed: int) -> pd.DataFrame:
    """A copy of ``cat.items`` whose TV shows carry the text of TVmaze ``shows`` (SHOW_COLUMNS).

    Only TVmaze shows with a description are used. They are matched to synthetic shows by a
    generator of its own (seeded by ``seed``), never the catalogue's, so the interactions stay
    exactly those without text: synthetic shows are visited in a seeded order and each takes the
    unused TVmaze show sharing most genres with it (ties broken by a seeded draw), so the real
    text roughly agrees with the latent genres behind the interactions. A season k > 1 is titled
    "<name> — Season k" and its description starts "<name>, season k. ", as without text. An
    empty TVmaze genre list or network keeps the synthetic value; release dates, cast, creator
    and seasons stay synthetic (the interactions depend on the release dates).
    """
    items = cat.items.copy()
    usable = shows[shows["description"] != ""].sort_values("tvmaze_id", kind="stable")
    # Each TV item's show (its first season's row) and season number, along its chain.
    root = np.arange(len(items))
    season = np.ones(len(items), np.int64)
    for row in np.flatnonzero(cat.predecessor >= 0):  # a predecessor always comes first
        root[row], season[row] = root[cat.predecessor[row]], season[cat.predecessor[row]] + 1
    show_rows = np.flatnonzero(cat.is_tv & (cat.predecessor < 0))

    rng = np.random.default_rng([seed, 0x7476_6D61])  # "tvma": a stream apart from the catalogue's
    wanted = [_genre_set(items.at[row, "genres"]) for row in show_rows]
    offered = [_genre_set(g) for g in usable["genres"]]
    priority = rng.random(len(usable))  # seeded tie-break among equally good matches
    free = np.ones(len(usable), bool)
    taken: dict[int, int] = {}  # show row -> position in ``usable``
    for visit in rng.permutation(len(show_rows)):
        if not free.any():
            break
        overlap = np.array([len(wanted[visit] & g) / max(len(wanted[visit] | g), 1) for g in offered])
        choice = int(np.argmax(np.where(free, overlap + 1e-3 * priority, -np.inf)))
        free[choice] = False
        taken[int(show_rows[visit])] = choice

    for row in np.flatnonzero(cat.is_tv):
        pick = taken.get(int(root[row]))
        if pick is None:
            continue
        show = usable.iloc[pick]
        k = int(season[row])
        items.at[row, "title"] = f"{show['title']} — Season {k}"
        prefix = f"{show['title']}, season {k}. " if k > 1 else ""
        items.at[row, "description"] = prefix + show["description"]
        if show["genres"]:
            items.at[row, "genres"] = show["genres"]
        if show["network"]:
            items.at[row, "network"] = show["network"]
    left = len(show_rows) - len(taken)
    message = (f"synthetic: {len(taken)} of {len(show_rows)} shows take TVmaze text "
               f"({len(usable)} TVmaze shows with a summary); {left} keep their synthetic text")
    (log.warning if left else log.info)(message)
    return items


def _genre_set(genres: str) -> set[str]:
    """Genres for matching: TVmaze's "Science-Fiction" is the synthetic "Sci-Fi"."""
    return {"Sci-Fi" if g == "Science-Fiction" else g for g in genres.split("|") if g}
