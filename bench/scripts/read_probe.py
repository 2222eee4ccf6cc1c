"""Time one BFS level's value reads (3 states of a GSM8K problem) against the decoded values."""
import time
import torch
from seedtree.llm import LLM
from seedtree.engine.reads import ReadCache, read
from seedtree.decoding.params import SamplingParams
from seedtree.search.logprob import prefixes_to_read
from seedtree.tasks import get_task

task = get_task("gsm8k")
ex = task.get(5)
steps = [("Sub-question 1: How many apples does she have? Answer 1: 12",),
         ("Sub-question 1: How much does each cost? Answer 1: 3 dollars",),
         ("Sub-question 1: What is the total? Answer 1: 36",)]
llm = LLM("qwen2.5-coder", dtype="bfloat16", draft_dtype="int8", progress=False)
engine = llm.engine("seed-batched")
pair = engine.pair
texts = [task.value_prompt(ex, s).text for s in steps]
ids = [engine.encode(t) for t in texts]
one = pair.tokenizer("1", add_special_tokens=False)["input_ids"]
print("prompt lengths", [len(i) for i in ids])
def timed_read(cache):
    seqs = [(i + one, 2) for i in ids]
    return engine.tail_logprobs(seqs, cache).result()
for rep in range(2):
    cache = ReadCache()
    t = time.perf_counter(); r = timed_read(cache); a = time.perf_counter() - t
    t = time.perf_counter(); r2 = timed_read(cache); b = time.perf_counter() - t
    print(f"read cold {a:.2f} s (fed {r.fed}, forwards {r.forwards}), warm {b:.2f} s (fed {r2.fed})")
    t = time.perf_counter(); r3 = timed_read(None); c = time.perf_counter() - t
    print(f"read without cache {c:.2f} s (fed {r3.fed})")
    engine.prefix_cache.clear()
    params = SamplingParams(max_new_tokens=task.value_tokens, stop=("\n",), temperature=0.7, seed=1)
    t = time.perf_counter(); out = llm.generate(texts, params, method="seed-batched", chat=True); d = time.perf_counter() - t
    print(f"decoded values {d:.2f} s: {[o.text for o in out]} tokens {[len(o.token_ids) for o in out]}")
llm.close()
