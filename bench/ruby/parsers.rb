# fluentd's own parser plugins on the same 1000 lines as bench/benches/parsers.rs, in a
# loop, for the closing comparison with spate's criterion figures (lines/s, MB/s).
# Needs Ruby with fluentd's gems and fluentd's lib directory:
#   ruby -I /path/to/fluentd/lib bench/ruby/parsers.rb
require 'fluent/plugin/parser_json'
require 'fluent/plugin/parser_ltsv'
require 'fluent/plugin/parser_csv'
require 'fluent/plugin/parser_tsv'
require 'fluent/plugin/parser_regexp'
require 'fluent/plugin/parser_apache2'
require 'fluent/plugin/parser_nginx'
require 'fluent/plugin/parser_syslog'
require 'fluent/plugin/parser_none'
require 'fluent/plugin/parser_msgpack'
require 'fluent/config/element'
require 'fluent/system_config'
# The parsers need only the worker id and a default system config, not the daemon
# (Fluent::Engine pulls in every plugin helper and their gems).
module Fluent
  module Engine
    def self.worker_id
      0
    end

    def self.supervisor_mode
      false
    end
  end

  class SystemConfig
    module Mixin
      def system_config
        @_system_config ||= Fluent::SystemConfig.new
      end
    end
  end
end
require 'fluent/log'
require 'msgpack'

$log = Fluent::Log.new(ServerEngine::DaemonLogger.new(File::NULL)) rescue nil

MONTHS = %w[Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec]
PATHS = ['/', '/api/v1/items/12345', '/static/app.js?v=3', '/login']
N = 1000

def hms(i)
  s = i / 10
  [10 + s / 3600 % 10, s / 60 % 60, s % 60]
end

def combined(i, xff)
  h, m, s = hms(i)
  format('192.168.0.%d - - [28/%s/2013:%02d:%02d:%02d +0900] "GET %s HTTP/1.1" 200 %d "-" "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36"%s',
         i % 250, MONTHS[i % 12], h, m, s, PATHS[i % 4], 700 + i, xff ? ' "10.0.0.1"' : '')
end

def syslog3164(i)
  h, m, s = hms(i)
  format('<%d>%s %2d %02d:%02d:%02d host%d sshd[%d]: Accepted publickey for user%d from 10.0.0.%d port %d ssh2',
         8 + i % 100, MONTHS[i % 12], 1 + i % 28, h, m, s, i % 10, 1000 + i, i % 50, i % 250, 40000 + i)
end

CASES = [
  ['none', Fluent::Plugin::NoneParser, {}, (0...N).map { |i| "plain text log line number #{i} with some words in it" }],
  ['json', Fluent::Plugin::JSONParser, {}, (0...N).map { |i| format('{"time":%d,"host":"192.168.0.%d","method":"GET","path":"%s","code":200,"size":%d,"agent":"Mozilla/5.0"}', 1362020400 + i / 10, i % 250, PATHS[i % 4], 700 + i) }],
  ['ltsv', Fluent::Plugin::LabeledTSVParser, { 'time_format' => '%d/%b/%Y:%H:%M:%S %z' }, (0...N).map { |i| h, m, s = hms(i); format("host:192.168.0.%d\tuser:-\ttime:28/Feb/2013:%02d:%02d:%02d +0900\treq:GET %s HTTP/1.1\tstatus:200\tsize:%d\treferer:-\tua:Mozilla/5.0", i % 250, h, m, s, PATHS[i % 4], 700 + i) }],
  ['csv', Fluent::Plugin::CSVParser, { 'keys' => 'time,host,method,path,code,size', 'time_key' => 'time', 'time_format' => '%Y-%m-%d %H:%M:%S' }, (0...N).map { |i| h, m, s = hms(i); format('2013-02-28 %02d:%02d:%02d,192.168.0.%d,GET,"%s",200,%d', h, m, s, i % 250, PATHS[i % 4], 700 + i) }],
  ['tsv', Fluent::Plugin::TSVParser, { 'keys' => 'time,host,method,path,code,size', 'time_key' => 'time', 'time_format' => '%Y-%m-%d %H:%M:%S' }, (0...N).map { |i| h, m, s = hms(i); format("2013-02-28 %02d:%02d:%02d\t192.168.0.%d\tGET\t%s\t200\t%d", h, m, s, i % 250, PATHS[i % 4], 700 + i) }],
  ['regexp', Fluent::Plugin::RegexpParser, { 'expression' => '/^(?<time>[^ ]+ [^ ]+) \[(?<level>\w+)\] (?<component>[^:]+): (?<message>.*)$/', 'time_format' => '%Y-%m-%d %H:%M:%S.%N' }, (0...N).map { |i| h, m, s = hms(i); format('2013-02-28 %02d:%02d:%02d.%03d [%s] worker.%d: request %d finished in %d ms', h, m, s, i % 1000, %w[info warn error][i % 3], i % 8, i, i % 97) }],
  ['apache2', Fluent::Plugin::Apache2Parser, {}, (0...N).map { |i| combined(i, false) }],
  ['nginx', Fluent::Plugin::NginxParser, {}, (0...N).map { |i| combined(i, true) }],
  ['syslog_rfc3164', Fluent::Plugin::SyslogParser, { 'with_priority' => 'true' }, (0...N).map { |i| syslog3164(i) }],
  ['syslog_rfc3164_string', Fluent::Plugin::SyslogParser, { 'with_priority' => 'true', 'parser_engine' => 'string' }, (0...N).map { |i| syslog3164(i) }],
  ['syslog_rfc5424', Fluent::Plugin::SyslogParser, { 'with_priority' => 'true', 'message_format' => 'rfc5424' }, (0...N).map { |i| h, m, s = hms(i); format('<%d>1 2013-02-28T%02d:%02d:%02d.%03dZ host%d app%d %d ID%d [exampleSDID@32473 iut="3" eventSource="Application"] request %d done', 8 + i % 100, h, m, s, i % 1000, i % 10, i % 5, 1000 + i, i % 40, i) }],
]

puts "ruby #{RUBY_VERSION}"
CASES.each do |name, klass, conf, lines|
  p = klass.new
  p.configure(Fluent::Config::Element.new('parse', '', conf, []))
  bytes = lines.sum(&:bytesize)
  n = 0
  lines.each { |l| p.parse(l) { |t, r| raise "#{name}: no match: #{l}" unless r; n += 1 } }
  rounds = 0
  t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  while Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0 < 3
    lines.each { |l| p.parse(l) { |_t, _r| } }
    rounds += 1
  end
  dt = Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0
  printf("%-22s %10.0f lines/s %8.1f MB/s\n", name, rounds * N / dt, rounds * bytes / dt / 1e6)
end
