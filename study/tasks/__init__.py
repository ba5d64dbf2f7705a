"""Task generators: working memory and chaotic signal separation."""
