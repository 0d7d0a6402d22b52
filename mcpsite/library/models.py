"""A small lending library: real-looking related data for the demo's MCP resources and data tools."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Author(models.Model):
    name = models.CharField(max_length=200, db_index=True)
    birth_year = models.PositiveSmallIntegerField(null=True, blank=True)
    country = models.CharField(max_length=100, blank=True)
    biography = models.TextField(blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Book(models.Model):
    class Genre(models.TextChoices):
        NOVEL = "novel", "Novel"
        MYSTERY = "mystery", "Mystery"
        SCIENCE_FICTION = "science_fiction", "Science fiction"
        HISTORY = "history", "History"
        SCIENCE = "science", "Science"
        POETRY = "poetry", "Poetry"
        BIOGRAPHY = "biography", "Biography"
        CHILDREN = "children", "Children's"

    title = models.CharField(max_length=300, db_index=True)
    isbn = models.CharField("ISBN", max_length=13, unique=True)
    author = models.ForeignKey(Author, on_delete=models.PROTECT, related_name="books")
    genre = models.CharField(max_length=20, choices=Genre.choices)
    published = models.DateField(db_index=True)
    pages = models.PositiveIntegerField()

    class Meta:
        ordering = ["title"]

    def __str__(self) -> str:
        return self.title


class Member(models.Model):
    """A library member: personal data, readable by librarians only."""

    name = models.CharField(max_length=200)
    email = models.EmailField()
    card_number = models.CharField(max_length=12, unique=True)
    joined = models.DateField()
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="library_member"
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Loan(models.Model):
    book = models.ForeignKey(Book, on_delete=models.CASCADE, related_name="loans")
    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="loans")
    borrowed = models.DateField(db_index=True)
    due = models.DateField()
    returned = models.DateField(null=True, blank=True)

    class Meta:
        ordering = ["-borrowed"]

    def __str__(self) -> str:
        return f"{self.book} to {self.member} on {self.borrowed}"
