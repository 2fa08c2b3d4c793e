"""Quickstart: the environment in a minute on a CPU (the README's first example; the tests check that the
README's copy is this file's code and run it).

It makes RetrievalEmbed-v0 over 100 documents of a bundled dataset, plays one episode with the frozen
all-MiniLM-L6-v2 encoder as the policy (the query embedded like a document) and prints the top of the
ranking and the reward. The first run encodes the 100 documents; later runs read them from sr3's cache.
"""

import gymnasium as gym

import sr3_env

# The bundled semanlink set (Semanlink tags -> arXiv abstracts): 20 of its queries, 100 of its documents
dataset = sr3_env.load_dataset("semanlink").subset(num_queries=20, num_docs=100, seed=0)
env = gym.make("RetrievalEmbed-v0", dataset=dataset, encoder="minilm", reward="ndcg@10", render_mode="ansi")

query, info = env.reset(seed=0)                               # the observation is a query text
action = env.unwrapped.encoder.encode_documents([query])[0]   # your policy goes here: any 384-d vector
query, reward, terminated, truncated, info = env.step(action)
print(env.render())                                           # the top 5 documents, the relevant ones marked
print(f"nDCG@10 {reward:.3f}; the first relevant document is ranked {info['rank']} of {len(dataset.doc_ids)}")
