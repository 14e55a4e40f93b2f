"""Domain logic: the only code that changes models. Views, API and tasks call it."""
