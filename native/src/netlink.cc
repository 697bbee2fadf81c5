// Netlink sockets (rtnetlink, ctnetlink) and per-netns sysctls.
//
// Only the syscalls live here: TS (netlink.ts) encodes every request and decodes every reply.
// A socket is bound to the network namespace it was created in, for its whole life. To work
// inside a pod's netns we therefore open the socket there with a short setns-and-back on the
// calling thread (one open() + setns() + socket() + setns(), microseconds), and from then on
// talk to that namespace from any thread without moving one. The same dance opens a
// /proc/sys/net file, which the kernel resolves against the opener's netns.
//
// Transactions (send a request, read replies up to the ACK or NLMSG_DONE) run on a libuv pool
// thread: a veth create or a big dump can take milliseconds of kernel time, which must not
// block the event loop. TS serialises transactions per socket, so a socket is never read by
// two threads at once.
#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "addon.h"

#ifndef NETLINK_EXT_ACK
#define NETLINK_EXT_ACK 11
#endif
#ifndef NETLINK_CAP_ACK
#define NETLINK_CAP_ACK 10
#endif
#ifndef NLM_F_ACK_TLVS
#define NLM_F_ACK_TLVS 0x200
#endif
#ifndef NLM_F_CAPPED
#define NLM_F_CAPPED 0x100
#endif

namespace berth {
namespace {

// Runs fn() with the calling thread in the network namespace `nsfd` (-1: where it is), then
// moves it back. On failure returns errno and sets *failed to the syscall's name.
template <typename F>
int InNetns(int nsfd, const char** failed, F fn) {
  if (nsfd < 0) return fn();
  int self = ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (self < 0) {
    *failed = "open";
    return errno;
  }
  if (::setns(nsfd, CLONE_NEWNET) != 0) {
    int err = errno;
    ::close(self);
    *failed = "setns";
    return err;
  }
  int rc = fn();
  // A JS thread left in a pod's namespace would silently misroute every later call: crash
  // instead. setns() back into our own namespace fails only if the kernel is out of memory.
  if (::setns(self, CLONE_NEWNET) != 0) std::abort();
  ::close(self);
  return rc;
}

// nlOpen(protocol: number, netnsFd: number /* -1 = this thread's netns */): number (fd)
Napi::Value NlOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int protocol = info[0].As<Napi::Number>().Int32Value();
  int nsfd = info[1].As<Napi::Number>().Int32Value();
  int fd = -1;
  const char* failed = "socket";
  int err = InNetns(nsfd, &failed, [&]() -> int {
    fd = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, protocol);
    return fd < 0 ? errno : 0;
  });
  if (err != 0) return ThrowSyscallError(env, err, failed);
  int one = 1;
  // Extended ACKs carry the kernel's reason ("Unknown device type"); capped ACKs do not echo
  // the request back in every error.
  ::setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one);
  ::setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof one);
  int rcvbuf = 1 << 20;
  if (::setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) != 0)
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  // A pool thread must never wait forever on a reply that does not come.
  struct timeval tv = {10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  struct sockaddr_nl local = {};
  local.nl_family = AF_NETLINK;
  if (::bind(fd, reinterpret_cast<struct sockaddr*>(&local), sizeof local) != 0) {
    err = errno;
    ::close(fd);
    return ThrowSyscallError(env, err, "bind");
  }
  return Napi::Number::New(env, fd);
}

// nlClose(fd: number)
Napi::Value NlClose(const Napi::CallbackInfo& info) {
  ::close(info[0].As<Napi::Number>().Int32Value());
  return info.Env().Undefined();
}

class TransactWorker : public Napi::AsyncWorker {
 public:
  TransactWorker(Napi::Function cb, int fd, const uint8_t* req, size_t len)
      : Napi::AsyncWorker(cb, "berth.netlink"), fd_(fd), req_(req, req + len) {}

  // The request may hold several messages with consecutive sequence numbers (a batch): the
  // kernel answers each in order, an error on one not stopping the next, so we read until
  // every one has been answered and report the first failure with its index.
  void Execute() override {
    const struct nlmsghdr* sent = reinterpret_cast<const struct nlmsghdr*>(req_.data());
    uint32_t seq = sent->nlmsg_seq;
    uint32_t count = 0;
    {
      size_t left = req_.size();
      for (const struct nlmsghdr* h = sent; NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) count++;
    }
    uint32_t remaining = count;
    struct sockaddr_nl kernel = {};
    kernel.nl_family = AF_NETLINK;
    ssize_t n;
    do {
      n = ::sendto(fd_, req_.data(), req_.size(), 0, reinterpret_cast<struct sockaddr*>(&kernel), sizeof kernel);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
      errno_ = errno;
      syscall_ = "sendto";
      return;
    }
    std::vector<uint8_t> buf(64 * 1024);
    for (;;) {
      do {
        n = ::recv(fd_, buf.data(), buf.size(), 0);
      } while (n < 0 && errno == EINTR);
      if (n < 0) {
        errno_ = (errno == EAGAIN || errno == EWOULDBLOCK) ? ETIMEDOUT : errno;
        syscall_ = "recv";
        return;
      }
      size_t left = static_cast<size_t>(n);
      for (struct nlmsghdr* h = reinterpret_cast<struct nlmsghdr*>(buf.data()); NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
        // Not ours: a late reply to an earlier, timed-out request.
        if (h->nlmsg_seq - seq >= count) continue;
        if (h->nlmsg_type == NLMSG_ERROR || h->nlmsg_type == NLMSG_DONE) {
          int32_t code = 0;
          if (h->nlmsg_len >= NLMSG_LENGTH(sizeof code)) std::memcpy(&code, NLMSG_DATA(h), sizeof code);
          if (code < 0 && errno_ == 0) {
            errno_ = -code;
            syscall_ = "netlink";
            failed_ = static_cast<int32_t>(h->nlmsg_seq - seq);
            if (h->nlmsg_type == NLMSG_ERROR) ReadExtAck(h);
          }
          if (--remaining == 0) return;
          continue;
        }
        const uint8_t* p = reinterpret_cast<const uint8_t*>(h);
        out_.insert(out_.end(), p, p + NLMSG_ALIGN(h->nlmsg_len));
        // A single reply that is neither part of a dump nor followed by an ACK ends here.
        if (count == 1 && !(h->nlmsg_flags & NLM_F_MULTI) && !(sent->nlmsg_flags & NLM_F_ACK)) return;
      }
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::Value extack = extack_.empty() ? env.Null() : Napi::String::New(env, extack_);
    Napi::Value data = Napi::Buffer<uint8_t>::Copy(env, out_.data(), out_.size());
    Callback().Call({Napi::Number::New(env, errno_), Napi::String::New(env, syscall_), extack, data, Napi::Number::New(env, failed_)});
  }

 private:
  // With NETLINK_EXT_ACK the error carries TLVs after the (capped) request header; type 1
  // (NLMSGERR_ATTR_MSG) is the kernel's human-readable reason.
  void ReadExtAck(const struct nlmsghdr* h) {
    if (!(h->nlmsg_flags & NLM_F_ACK_TLVS)) return;
    size_t off = NLMSG_LENGTH(sizeof(struct nlmsgerr));
    if (!(h->nlmsg_flags & NLM_F_CAPPED)) {
      const struct nlmsgerr* e = static_cast<const struct nlmsgerr*>(NLMSG_DATA(h));
      off += NLMSG_ALIGN(e->msg.nlmsg_len) - NLMSG_ALIGN(sizeof(struct nlmsghdr));
    }
    const uint8_t* base = reinterpret_cast<const uint8_t*>(h);
    while (off + sizeof(struct nlattr) <= h->nlmsg_len) {
      const struct nlattr* a = reinterpret_cast<const struct nlattr*>(base + off);
      if (a->nla_len < sizeof(struct nlattr) || off + a->nla_len > h->nlmsg_len) return;
      if ((a->nla_type & NLA_TYPE_MASK) == 1) {
        const char* s = reinterpret_cast<const char*>(a) + NLA_HDRLEN;
        extack_.assign(s, strnlen(s, a->nla_len - NLA_HDRLEN));
        return;
      }
      off += NLA_ALIGN(a->nla_len);
    }
  }

  int fd_;
  std::vector<uint8_t> req_;
  std::vector<uint8_t> out_;
  int errno_ = 0;
  int32_t failed_ = -1;
  const char* syscall_ = "";
  std::string extack_;
};

// nlTransact(fd, request: Buffer /* nlmsghdr-framed messages, consecutive seqs */, cb(errno, syscall, extack, replies: Buffer, failedIndex))
Napi::Value NlTransact(const Napi::CallbackInfo& info) {
  int fd = info[0].As<Napi::Number>().Int32Value();
  Napi::Buffer<uint8_t> req = info[1].As<Napi::Buffer<uint8_t>>();
  auto* worker = new TransactWorker(info[2].As<Napi::Function>(), fd, req.Data(), req.Length());
  worker->Queue();
  return info.Env().Undefined();
}

// netnsOpen(path): number. Opens a namespace file and checks that it is a network namespace.
Napi::Value NetnsOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = info[0].As<Napi::String>().Utf8Value();
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return ThrowSyscallError(env, errno, "open", {nullptr, path.c_str()});
  int type = ::ioctl(fd, NS_GET_NSTYPE);
  int err = errno;
  if (type != CLONE_NEWNET) {
    ::close(fd);
    // ENOTTY: not a namespace file at all; EINVAL: a namespace of another kind.
    return ThrowSyscallError(env, type < 0 ? err : EINVAL, "ioctl(NS_GET_NSTYPE)", {nullptr, path.c_str()});
  }
  return Napi::Number::New(env, fd);
}

// closeFd(fd)
Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  ::close(info[0].As<Napi::Number>().Int32Value());
  return info.Env().Undefined();
}

// netnsSysctl(netnsFd: number /* -1 = here */, path: string /* absolute, under /proc/sys */, value: string | null): string
// Writes `value` when given; returns the value read (before any write) otherwise ''.
Napi::Value NetnsSysctl(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int nsfd = info[0].As<Napi::Number>().Int32Value();
  std::string path = info[1].As<Napi::String>().Utf8Value();
  bool write = info[2].IsString();
  std::string value = write ? info[2].As<Napi::String>().Utf8Value() : std::string();
  int fd = -1;
  const char* failed = "open";
  int err = InNetns(nsfd, &failed, [&]() -> int {
    fd = ::open(path.c_str(), (write ? O_WRONLY : O_RDONLY) | O_CLOEXEC | O_NOFOLLOW);
    return fd < 0 ? errno : 0;
  });
  if (err != 0) return ThrowSyscallError(env, err, failed, {nullptr, path.c_str()});
  std::string out;
  if (write) {
    ssize_t n = ::write(fd, value.data(), value.size());
    err = n < 0 ? errno : 0;
  } else {
    char buf[4096];
    ssize_t n = ::read(fd, buf, sizeof buf);
    err = n < 0 ? errno : 0;
    if (n > 0) out.assign(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  if (err != 0) return ThrowSyscallError(env, err, write ? "write" : "read", {nullptr, path.c_str()});
  return Napi::String::New(env, out);
}

void InitNetlink(Napi::Env env, Napi::Object exports) {
  exports.Set("nlOpen", Napi::Function::New(env, NlOpen, "nlOpen"));
  exports.Set("nlClose", Napi::Function::New(env, NlClose, "nlClose"));
  exports.Set("nlTransact", Napi::Function::New(env, NlTransact, "nlTransact"));
  exports.Set("netnsOpen", Napi::Function::New(env, NetnsOpen, "netnsOpen"));
  exports.Set("netnsCloseFd", Napi::Function::New(env, CloseFd, "netnsCloseFd"));
  exports.Set("netnsSysctl", Napi::Function::New(env, NetnsSysctl, "netnsSysctl"));
}

ModuleRegistrar registrar(InitNetlink);

}  // namespace
}  // namespace berth
