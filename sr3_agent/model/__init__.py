"""The policy's model: `ReasoningEmbedder` (`embedder`) and the modules it uses (`precision`, `generation`,
`prefix_reuse`, `kvcache`, `chat`), where its language model comes from (`models`), and tiny models
of many families for tests (`tiny_models`). Nothing here imports training, evaluation or serving."""
