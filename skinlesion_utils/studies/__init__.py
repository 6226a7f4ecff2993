"""Per-chapter studies: what only one chapter's analysis needs, one module per chapter
(``chNN_<topic>.py``). Everything two chapters or the lab use lives in the core modules."""
