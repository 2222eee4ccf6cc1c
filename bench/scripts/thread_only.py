"""Every torch op on one non-main thread (the main thread never runs one): as fast as main?"""
import threading, time
def body():
    import torch
    from seedtree.llm import LLM
    from seedtree.decoding import SamplingParams
    llm = LLM(dtype="bfloat16", progress=False)
    prompt = "Q: Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether in April and May?\nA: Let's think step by step."
    params = SamplingParams(n=3, max_new_tokens=80, ignore_eos=True)
    for tag in ("warm thread-only", "thread-only", "thread-only"):
        llm.prefix_cache.__init__(1024.0)
        t = time.perf_counter()
        llm.generate_many([prompt], params, method="seed-batched", chat=True)
        print(f"{tag}: {time.perf_counter()-t:.2f} s", flush=True)
th = threading.Thread(target=body); th.start(); th.join()
