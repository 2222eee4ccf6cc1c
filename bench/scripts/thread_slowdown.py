"""Is the step engine slower off the main thread? Same generate call, main thread vs a thread."""
# Usage: .venv/bin/python bench/scripts/thread_slowdown.py (the real pair, bfloat16; ~2 minutes)
import threading, time, torch
from seedtree.llm import LLM
from seedtree.decoding import SamplingParams
llm = LLM(dtype="bfloat16", progress=False)
prompt = "Q: Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether in April and May?\nA: Let's think step by step."
params = SamplingParams(n=3, max_new_tokens=80, ignore_eos=True)
def once(tag):
    llm.prefix_cache.__init__(1024.0)
    t = time.perf_counter()
    r = llm.generate_many([prompt], params, method="seed-batched", chat=True)
    print(f"{tag}: {time.perf_counter()-t:.2f} s, threads {torch.get_num_threads()}, interop {torch.get_num_interop_threads()}, tokens {[len(x.token_ids) for x in r.results]}", flush=True)
def in_thread(tag, set_threads=None):
    def body():
        if set_threads: torch.set_num_threads(set_threads)
        once(tag)
    th = threading.Thread(target=body); th.start(); th.join()
once("warm main")
def twice():
    once("thread run 1"); once("thread run 2")
th = threading.Thread(target=twice); th.start(); th.join()
once("main again")
