"""Generate the library's demo data: thousands of related, real-looking rows, the same on every run."""

from __future__ import annotations

import random
from datetime import date, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import transaction

from .models import Author, Book, Loan, Member

AUTHORS, BOOKS, MEMBERS, LOANS = 400, 5_000, 600, 8_000

FIRST = [
    "Ada",
    "Alan",
    "Amara",
    "Ana",
    "Bruno",
    "Chen",
    "Clara",
    "Dmitri",
    "Elena",
    "Emeka",
    "Farah",
    "Greta",
    "Hiro",
    "Ines",
    "Jonas",
    "Kwame",
    "Lena",
    "Luis",
    "Maya",
    "Mei",
    "Nadia",
    "Noah",
    "Olga",
    "Omar",
    "Priya",
    "Rosa",
    "Sami",
    "Sofia",
    "Tariq",
    "Ulla",
    "Vera",
    "Wen",
    "Yara",
    "Zoe",
]
LAST = [
    "Abe",
    "Alvarez",
    "Bauer",
    "Costa",
    "Dubois",
    "Eriksen",
    "Fischer",
    "Garcia",
    "Haddad",
    "Ivanova",
    "Jensen",
    "Kowalski",
    "Larsen",
    "Moreau",
    "Nakamura",
    "Okafor",
    "Petrov",
    "Quinn",
    "Rossi",
    "Santos",
    "Tanaka",
    "Umar",
    "Varga",
    "Weber",
    "Xu",
    "Yilmaz",
    "Zimmermann",
]
COUNTRIES = [
    "Argentina",
    "Brazil",
    "Canada",
    "China",
    "Egypt",
    "France",
    "Germany",
    "India",
    "Italy",
    "Japan",
    "Kenya",
    "Mexico",
    "Nigeria",
    "Norway",
    "Poland",
    "Portugal",
    "Spain",
    "Sweden",
    "Turkey",
    "United Kingdom",
]
ADJECTIVES = [
    "Silent",
    "Hidden",
    "Last",
    "Golden",
    "Broken",
    "Distant",
    "Forgotten",
    "Burning",
    "Quiet",
    "Endless",
    "Secret",
    "Winter",
    "Northern",
    "Paper",
    "Glass",
    "Iron",
    "Salt",
    "Midnight",
    "Little",
    "Wandering",
]
NOUNS = [
    "River",
    "Garden",
    "Station",
    "Library",
    "Harbour",
    "Mountain",
    "Letter",
    "Orchard",
    "Lighthouse",
    "Kingdom",
    "Archive",
    "Island",
    "Map",
    "Clockmaker",
    "Bridge",
    "Forest",
    "Observatory",
    "Atlas",
    "Market",
    "Engine",
]
PATTERNS = ["The {a} {n}", "{a} {n}s", "A {n} in {c}", "The {n} of {c}", "Notes from the {a} {n}", "{n} and {n2}"]

LIBRARIAN, READER = "librarian", "reader"
DEMO_PASSWORD = "mcp-demo"


def isbn13(n: int) -> str:
    """A valid ISBN-13 (978 prefix, correct check digit) from a serial number."""
    body = f"978{n:09d}"
    total = sum(int(d) * (1 if i % 2 == 0 else 3) for i, d in enumerate(body))
    return body + str((10 - total % 10) % 10)


def _name(rng: random.Random) -> str:
    return f"{rng.choice(FIRST)} {rng.choice(LAST)}"


@transaction.atomic
def load(*, stdout: Any = None) -> bool:
    """Create the library (False when it is already there) and its demo accounts."""
    _accounts()
    if Book.objects.exists():
        return False
    rng = random.Random(20261123)
    authors = Author.objects.bulk_create(
        [
            Author(
                name=_name(rng),
                birth_year=rng.randint(1900, 1995),
                country=rng.choice(COUNTRIES),
                biography=f"Writes about the {rng.choice(NOUNS).lower()} and the {rng.choice(NOUNS).lower()}.",
            )
            for _ in range(AUTHORS)
        ]
    )
    books = Book.objects.bulk_create(
        [
            Book(
                title=rng.choice(PATTERNS).format(
                    a=rng.choice(ADJECTIVES), n=rng.choice(NOUNS), n2=rng.choice(NOUNS), c=rng.choice(COUNTRIES)
                ),
                isbn=isbn13(100_000 + i),
                author=rng.choice(authors),
                genre=rng.choice(Book.Genre.values),
                published=date(1950, 1, 1) + timedelta(days=rng.randint(0, 27_000)),
                pages=rng.randint(64, 900),
            )
            for i in range(BOOKS)
        ],
        batch_size=1000,
    )
    members = Member.objects.bulk_create(
        [
            Member(
                name=(name := _name(rng)),
                email=f"{name.lower().replace(' ', '.')}{i}@example.org",
                card_number=f"LIB{i:07d}",
                joined=date(2015, 1, 1) + timedelta(days=rng.randint(0, 3800)),
            )
            for i in range(MEMBERS)
        ]
    )
    today = date(2026, 11, 1)
    loans = []
    for _ in range(LOANS):
        borrowed = today - timedelta(days=rng.randint(0, 1500))
        returned = borrowed + timedelta(days=rng.randint(1, 40)) if rng.random() < 0.9 else None
        loans.append(
            Loan(
                book=rng.choice(books),
                member=rng.choice(members),
                borrowed=borrowed,
                due=borrowed + timedelta(days=21),
                returned=returned if returned and returned <= today else None,
            )
        )
    Loan.objects.bulk_create(loans, batch_size=1000)
    reader = get_user_model().objects.get(username=READER)
    Member.objects.filter(pk=members[0].pk).update(user=reader)
    return True


def _accounts() -> None:
    """A librarian (may read members and every loan) and a reader (linked to a member: their own loans)."""
    User = get_user_model()  # noqa: N806 - Django's idiom
    group, _ = Group.objects.get_or_create(name="Librarians")
    group.permissions.set(Permission.objects.filter(content_type__app_label="library", codename__startswith="view_"))
    for username, groups in ((LIBRARIAN, [group]), (READER, [])):
        if not User.objects.filter(username=username).exists():
            user = User.objects.create_user(username, f"{username}@example.org", DEMO_PASSWORD)
            user.groups.set(groups)
