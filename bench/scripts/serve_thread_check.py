"""`seedtree serve` (bfloat16) in a subprocess: one completion with n=3, 80 tokens, timed through
the openai client (a warm-up request first). Compare with bench/scripts/thread_slowdown.py's
main-thread time. Usage: python bench/scripts/serve_thread_check.py [SRC_DIR]  (SRC_DIR: the
seedtree source to serve from, default this checkout's)."""
import os, subprocess, sys, time, httpx
from openai import OpenAI
src = sys.argv[1] if len(sys.argv) > 1 else "src"
port = 8765
env = dict(os.environ, PYTHONPATH=src)
proc = subprocess.Popen([sys.executable, "-m", "seedtree.cli", "serve", "--dtype", "bfloat16", "--port", str(port)],
                        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200: break
        except httpx.HTTPError: pass
        time.sleep(0.5)
    client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", timeout=600)
    model = client.models.list().data[0].id
    prompt = "Q: Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether in April and May?\nA: Let's think step by step."
    for tag in ("warm-up", "timed", "timed"):
        t = time.perf_counter()
        r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}], n=3,
                                           max_tokens=80, temperature=0, extra_body={"ignore_eos": True})
        print(f"{src}: {tag}: {time.perf_counter() - t:.2f} s, tokens {r.usage.completion_tokens}", flush=True)
finally:
    proc.terminate(); proc.wait(timeout=120)
